//! nginx `mirror` in front of production: the in-path alternative to the tap that users would
//! pick. xtask starts Debian's `nginx` itself (never the system service) with a generated
//! config in a temporary directory: it listens on a free loopback port, proxies to production
//! over keep-alive connections and mirrors every request, body included, to the shadow.

use crate::services::{Processes, spawn_logged, wait_ready};
use anyhow::Context;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A running nginx; stopped (SIGTERM: fast shutdown) and its directory removed on drop.
pub struct Nginx {
    /// Declared first: nginx stops before its directory goes.
    _procs: Processes,
    _dir: tempfile::TempDir,
    pub listen: SocketAddr,
}

impl Nginx {
    /// Starts nginx on `listen`, proxying to `production` and mirroring to `shadow`; returns
    /// once a request through it is answered.
    pub fn start(
        listen: SocketAddr,
        production: SocketAddr,
        shadow: SocketAddr,
    ) -> anyhow::Result<Nginx> {
        // Its own directory, world-traversable: nginx's workers run as `nobody` and create
        // their temporary files there.
        let dir = tempfile::Builder::new()
            .prefix("shadowtap-bench-nginx-")
            .tempdir()
            .context("cannot create a temporary directory for nginx")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let conf = dir.path().join("nginx.conf");
        let error_log = dir.path().join("error.log");
        std::fs::write(&conf, config(dir.path(), listen, production, shadow))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let mut procs = Processes::default();
        let child = spawn_logged(
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log),
            &dir.path().join("stdout.log"),
        )
        .context("cannot start nginx (apt-get install nginx)")?;
        procs.push("nginx", child);
        if let Err(err) = wait_ready(listen, "/v2/health/ready", &mut procs) {
            let log = std::fs::read_to_string(&error_log).unwrap_or_default();
            return Err(err).context(format!("nginx did not start; its error log:\n{log}"));
        }
        Ok(Nginx {
            _procs: procs,
            _dir: dir,
            listen,
        })
    }
}

/// nginx's configuration: `worker_processes auto`, no access log, keep-alive upstreams, and
/// `mirror` with the request body to the shadow. Errors are logged at `crit` only, so a failing
/// mirror costs no log line per request.
fn config(dir: &Path, listen: SocketAddr, production: SocketAddr, shadow: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"# Written by `cargo xtask bench` (nginx mirror variant); safe to delete.
worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log crit;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # 1 MiB request bodies stay in memory.
    client_max_body_size 8m;
    client_body_buffer_size 2m;

    upstream production {{
        server {production};
        keepalive 128;
    }}
    upstream shadow {{
        server {shadow};
        keepalive 128;
    }}

    server {{
        listen {listen};
        location / {{
            mirror /mirror;
            mirror_request_body on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://production;
        }}
        location = /mirror {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://shadow$request_uri;
        }}
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_mirrors_to_the_shadow_over_keepalive_upstreams() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let c = config(Path::new("/tmp/x"), addr(9000), addr(8080), addr(8081));
        for needle in [
            "listen 127.0.0.1:9000;",
            "server 127.0.0.1:8080;",
            "server 127.0.0.1:8081;",
            "mirror /mirror;",
            "mirror_request_body on;",
            "proxy_pass http://production;",
            "proxy_pass http://shadow$request_uri;",
            "worker_processes auto;",
            "access_log off;",
            "pid /tmp/x/nginx.pid;",
        ] {
            assert!(c.contains(needle), "{needle} missing from:\n{c}");
        }
        assert_eq!(c.matches("keepalive 128;").count(), 2, "{c}");
        // Balanced braces: nginx refuses the file otherwise.
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }
}
