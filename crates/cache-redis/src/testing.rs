//! Test support: throwaway `redis-server` processes on free loopback ports that a test can
//! stop, restart and pause, and a TCP proxy whose connections a test can cut.
//!
//! Servers listen on 127.0.0.1 only, keep nothing on disk (`--save ''`, no AOF) and are
//! killed by their pid when the handle is dropped, so a failing test cleans up too.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use cache_redis::testing::RedisServer;
//!
//! let mut server = RedisServer::start()?;
//! let url = server.url(); // redis://127.0.0.1:<free port>
//! server.stop();          // operations now fail with `Unavailable`
//! server.restart()?;      // same port, empty data set
//! server.pause();         // SIGSTOP: operations time out
//! server.resume();        // SIGCONT
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Whether the Redis tests of this run were switched off (`CACHE_SKIP_REDIS_TESTS=1`, set
/// by `cargo xtask test-all` when no `redis-server` is available). Tests return early and
/// say so when it is true.
pub fn redis_tests_skipped() -> bool {
    if std::env::var_os("CACHE_SKIP_REDIS_TESTS").is_some_and(|value| value == "1") {
        eprintln!("CACHE_SKIP_REDIS_TESTS=1: this Redis test is skipped");
        true
    } else {
        false
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A `redis-server` child process on a loopback port.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Serves TLS only (`--tls-port`), with these arguments.
    tls: bool,
    extra_args: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> io::Result<Self> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments (such as
    /// `["--requirepass", "secret"]`).
    pub fn start_with_args(extra_args: &[&str]) -> io::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            tls: false,
            extra_args: extra_args.iter().map(|&arg| arg.to_owned()).collect(),
            child: None,
            paused: false,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server that speaks TLS only, with the PEM files of its certificate, its
    /// key and the CA that signed it; clients need no certificate of their own.
    pub fn start_tls(
        certificate: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> io::Result<Self> {
        let path = |path: &std::path::Path| path.display().to_string();
        let mut server = Self {
            port: free_port()?,
            tls: true,
            extra_args: vec![
                "--tls-cert-file".to_owned(),
                path(certificate),
                "--tls-key-file".to_owned(),
                path(key),
                "--tls-ca-cert-file".to_owned(),
                path(ca),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ],
            child: None,
            paused: false,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL) and waits for it to exit: connections are refused until
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                self.signal(&child, Signal::CONT);
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts a new one on the same port (with an empty
    /// data set: nothing is persisted).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        // The port can stay busy for a moment after the old process exited.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections open but nothing is answered.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            self.signal(child, Signal::STOP);
            self.paused = true;
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            self.signal(child, Signal::CONT);
            self.paused = false;
        }
    }

    fn signal(&self, child: &Child, signal: Signal) {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .expect("a child's pid is a positive i32");
        let _ = kill_process(pid, signal);
    }

    fn spawn(&mut self) -> io::Result<()> {
        let port = self.port.to_string();
        let listen = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let mut child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "yes"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot start redis-server (is it on PATH?): {error}"),
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {port} exited at start ({status})"
                )));
            }
            let ready = if self.tls {
                TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            } else {
                answers_ping(self.port)
            };
            if ready {
                self.child = Some(child);
                self.paused = false;
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {port} did not answer within 10 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether something on `port` answers `PING` like Redis (`+PONG`, or `-NOAUTH` when it
/// wants a password).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 1];
    matches!(stream.read(&mut reply), Ok(1) if reply[0] == b'+' || reply[0] == b'-')
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:{target}`. While cut, it
/// closes every connection through it and every new one at once, so a client behind it
/// sees its server vanish while other clients keep theirs.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    up: Arc<watch::Sender<bool>>,
    /// How many connections are open through the proxy.
    open: Arc<watch::Sender<usize>>,
    accept_loop: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `127.0.0.1:{target}`. Must be called inside a tokio runtime.
    pub async fn start(target: u16) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(watch::Sender::new(true));
        let open = Arc::new(watch::Sender::new(0usize));
        let accept_loop = tokio::spawn({
            let (up, open) = (Arc::clone(&up), Arc::clone(&open));
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !*up.borrow() {
                        drop(client);
                        continue;
                    }
                    let mut state = up.subscribe();
                    open.send_modify(|open| *open += 1);
                    let open = Arc::clone(&open);
                    tokio::spawn(async move {
                        if let Ok(mut server) =
                            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, target)).await
                        {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = state.wait_for(|up| !*up) => {}
                            }
                        }
                        // Both sockets are closed by now (dropped with the futures above).
                        drop(client);
                        open.send_modify(|open| *open -= 1);
                    });
                }
            }
        });
        Ok(Self {
            port,
            up,
            open,
            accept_loop,
        })
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy and refuses new ones until
    /// [`restore`](Self::restore); returns once every connection is closed, so nothing
    /// sent afterwards can reach a client behind the proxy.
    pub async fn cut(&self) {
        self.up.send_replace(false);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.up.send_replace(false);
        self.accept_loop.abort();
    }
}
