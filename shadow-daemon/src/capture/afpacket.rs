//! AF_PACKET capture source (pnet), for hosts where the eBPF tap cannot be loaded.
