//! AF_PACKET capture source (pnet), for hosts where the eBPF tap cannot be loaded.

use super::{LiveCapture, TapSpec};
use crate::error::CaptureError;
use crate::shutdown::Shutdown;

/// Opens an AF_PACKET capture on the spec's interface.
pub fn open(spec: &TapSpec, _shutdown: Shutdown) -> Result<LiveCapture, CaptureError> {
    spec.validate()?;
    Err(CaptureError::Load(
        "AF_PACKET capture is not available yet".into(),
    ))
}
