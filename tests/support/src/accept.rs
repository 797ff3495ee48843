//! The accept loop shared by the test servers.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Accepts connections on the non-blocking `listener` until `stop` is set, serving each on a
/// thread of its own with `serve`; failures are printed with `what` and never stop the loop
/// (except a failing `accept`).
pub fn spawn_accept_loop<F>(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    what: &str,
    serve: F,
) -> JoinHandle<()>
where
    F: Fn(TcpStream) -> io::Result<()> + Send + Sync + 'static,
{
    let serve = Arc::new(serve);
    let what = what.to_string();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (serve, what) = (Arc::clone(&serve), what.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = serve(stream) {
                            eprintln!("{what}: connection failed: {e}");
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    eprintln!("{what}: accept failed: {e}");
                    break;
                }
            }
        }
    })
}
