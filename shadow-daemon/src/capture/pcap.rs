//! Offline capture source: reads pcap and pcapng files into [`super::Segment`]s.
