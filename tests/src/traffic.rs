//! Traffic helpers: UDP counters, TCP echo, ping, raw frames.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::lab::{self, Guest, Netns};

use crate::*;

/// Spawns `f` on a thread inside `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = netns_path(ns);
    std::thread::spawn(move || {
        let _inside = NetnsGuard::enter_path(&path);
        f()
    })
}

/// Runs `f` in `ns` (as [`spawn_in`]) and returns once it has sent on its
/// `ready` sender; panics when `what` did not start within 5 s.
pub fn spawn_ready<T: Send + 'static>(
    ns: &Netns,
    what: &str,
    f: impl FnOnce(mpsc::Sender<()>) -> T + Send + 'static,
) -> JoinHandle<T> {
    let (ready, ready_rx) = mpsc::channel();
    let handle = spawn_in(ns, move || f(ready));
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} in {} did not start", ns.name()));
    handle
}

/// Raises a socket's receive buffer past `rmem_max` (we are root), so a
/// burst is not lost while the counting thread is descheduled.
fn force_rcvbuf(fd: i32, bytes: i32) {
    // SAFETY: valid fd, int-sized option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        );
    }
}

/// UDP receiver on `0.0.0.0:port` in a namespace thread, counting datagrams
/// per source address until stopped.
pub struct UdpCounter {
    pub(crate) counts: Arc<Mutex<BTreeMap<Ipv4Addr, u64>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpCounter {
    /// Returns once the socket is bound.
    pub fn start(ns: &Netns, port: u16) -> Self {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, name) = (counts.clone(), stop.clone(), ns.name().to_owned());
        let handle = spawn_ready(ns, "UDP receiver", move |ready_tx| {
            let sock = UdpSocket::bind(("0.0.0.0", port))
                .unwrap_or_else(|e| panic!("binding UDP :{port} in {name}: {e}"));
            force_rcvbuf(sock.as_raw_fd(), 8 << 20);
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .expect("setting a read timeout");
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((_, SocketAddr::V4(from))) => {
                        *c.lock()
                            .expect("counter lock")
                            .entry(*from.ip())
                            .or_insert(0) += 1;
                    }
                    Ok(_) => {}
                    // Timeout: only stop once the socket is empty.
                    Err(_) if s.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        });
        Self {
            counts,
            stop,
            handle: Some(handle),
        }
    }

    /// Datagrams received so far from `src`.
    pub fn from(&self, src: Ipv4Addr) -> u64 {
        self.counts
            .lock()
            .expect("counter lock")
            .get(&src)
            .copied()
            .unwrap_or(0)
    }

    /// Counts for `duration`, then stops: the datagrams per source.
    pub fn collect_for(self, duration: Duration) -> BTreeMap<Ipv4Addr, u64> {
        std::thread::sleep(duration);
        self.stop()
    }

    /// Stops after draining the socket; returns the counts per source.
    pub fn stop(mut self) -> BTreeMap<Ipv4Addr, u64> {
        self.finish();
        self.counts.lock().expect("counter lock").clone()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() && !std::thread::panicking() {
                panic!("UDP receiver thread panicked");
            }
        }
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Sends `n` datagrams from inside `ns` to `dst:port`, never more than
/// `window` ahead of what `delivered()` reports (the receivers' count), so
/// no queue on the way (neighbour queue, veth rings of 256 frames, socket
/// buffers) can overflow however slowly a loaded machine runs its softirqs.
/// If nothing is delivered for 500 ms the sender goes on regardless: the
/// receivers' counts then show the loss.
pub fn send_udp(
    ns: &Netns,
    dst: Ipv4Addr,
    port: u16,
    n: usize,
    window: u64,
    delivered: impl Fn() -> u64 + Send + 'static,
) {
    let name = ns.name().to_owned();
    spawn_in(ns, move || {
        let sock =
            UdpSocket::bind(("0.0.0.0", 0)).unwrap_or_else(|e| panic!("UDP socket in {name}: {e}"));
        for i in 0..n {
            let ahead = |d: u64| i as u64 >= d + window;
            if ahead(delivered()) {
                wait_until(Duration::from_millis(500), || !ahead(delivered()));
            }
            let payload = format!("havip datagram {i}");
            sock.send_to(payload.as_bytes(), SocketAddrV4::new(dst, port))
                .unwrap_or_else(|e| {
                    panic!("sending datagram {i} to {dst}:{port} from {name}: {e}")
                });
        }
    })
    .join()
    .unwrap_or_else(|_| panic!("UDP sender in {} panicked", ns.name()));
}

/// An echo server in a namespace thread that records its peers (`P`):
/// stopped and joined by [`EchoServer::stop`] or on drop.
pub struct EchoServer<P> {
    peers: Arc<Mutex<Vec<P>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    what: &'static str,
}

impl<P: Clone + Send + 'static> EchoServer<P> {
    /// Opens a socket with `open` on `port` in `ns` (panics naming the port
    /// and namespace if it fails), then calls `serve_one` with it and the
    /// peer list until stopped; returns once the socket is open (panics
    /// after 5 s without).
    pub fn spawn<S>(
        ns: &Netns,
        what: &'static str,
        port: u16,
        open: impl FnOnce() -> std::io::Result<S> + Send + 'static,
        mut serve_one: impl FnMut(&S, &Mutex<Vec<P>>) + Send + 'static,
    ) -> Self {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        let name = ns.name().to_owned();
        let handle = spawn_ready(ns, &format!("{what} echo server"), move |ready| {
            let socket = open().unwrap_or_else(|e| panic!("opening {what} :{port} in {name}: {e}"));
            let _ = ready.send(());
            while !s.load(Ordering::Relaxed) {
                serve_one(&socket, &p);
            }
        });
        Self {
            peers,
            stop,
            handle: Some(handle),
            what,
        }
    }

    /// Stops the server; returns the peers it served.
    pub fn stop(mut self) -> Vec<P> {
        self.finish();
        self.peers.lock().expect("peers lock").clone()
    }
}

impl<P> EchoServer<P> {
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() && !std::thread::panicking() {
                panic!("{} echo thread panicked", self.what);
            }
        }
    }
}

impl<P> Drop for EchoServer<P> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// TCP echo server on `0.0.0.0:port` in a namespace thread: echoes what each
/// connection sends until it closes, and records the peers it accepted.
pub type TcpEcho = EchoServer<SocketAddr>;

impl EchoServer<SocketAddr> {
    /// Returns once the socket listens.
    pub fn start(ns: &Netns, port: u16) -> Self {
        let open = move || {
            let listener = TcpListener::bind(("0.0.0.0", port))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        Self::spawn(ns, "TCP", port, open, |listener, peers| {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    peers.lock().expect("peers lock").push(peer);
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        if conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        })
    }
}

/// Connects from inside `ns` to `dst:port`, sends `msg`, half-closes and
/// returns everything echoed back. Panics if the connection fails.
pub fn tcp_exchange(ns: &Netns, dst: Ipv4Addr, port: u16, msg: &[u8]) -> Vec<u8> {
    let (name, msg) = (ns.name().to_owned(), msg.to_vec());
    spawn_in(ns, move || {
        let to = SocketAddr::V4(SocketAddrV4::new(dst, port));
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("TCP connect {to} from {name}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("read timeout");
        conn.write_all(&msg)
            .unwrap_or_else(|e| panic!("TCP send to {to} from {name}: {e}"));
        conn.shutdown(std::net::Shutdown::Write)
            .unwrap_or_else(|e| panic!("TCP shutdown to {to} from {name}: {e}"));
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed)
            .unwrap_or_else(|e| panic!("TCP read from {to} in {name}: {e}"));
        echoed
    })
    .join()
    .unwrap_or_else(|_| panic!("TCP client in {} panicked", ns.name()))
}

/// `ping -c count` from `ns` to `dst`; panics unless every reply came back.
pub fn ping(ns: &Netns, dst: Ipv4Addr, count: u32) {
    let count = count.to_string();
    let dst = dst.to_string();
    ns.exec(&[
        "ping", "-q", "-n", "-c", &count, "-i", "0.02", "-W", "2", &dst,
    ])
    .unwrap_or_else(|e| panic!("ping {dst} from {}: {e:#}", ns.name()));
}

/// `Icmp: InEchos` of `ns` (echo requests received), from /proc/net/snmp.
pub fn icmp_in_echos(ns: &Netns) -> u64 {
    let out = ns
        .exec(&["cat", "/proc/net/snmp"])
        .unwrap_or_else(|e| panic!("reading /proc/net/snmp in {}: {e:#}", ns.name()));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(header), Some(values)) = (icmp.next(), icmp.next()) else {
        panic!("no Icmp lines in /proc/net/snmp of {}", ns.name());
    };
    header
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(h, _)| *h == "InEchos")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Icmp InEchos in /proc/net/snmp of {}", ns.name()))
}

/// Sends raw frames out of `eth0` of `guest` (as the guest would), in
/// batches of 64: before each batch waits (up to 2 s) until `seen()` (an
/// XDP counter) shows the previous ones arrived, so the host veth's
/// 256-frame ring never overflows on a loaded machine. Returns frames sent.
pub fn send_frames(guest: &Guest, frames: Vec<Vec<u8>>, seen: impl Fn() -> u64) -> u64 {
    let mut sent = 0u64;
    for batch in frames.chunks(64) {
        wait_until(Duration::from_secs(2), || seen() >= sent);
        let n = lab::send_raw(&guest.ns, "eth0", batch.to_vec())
            .unwrap_or_else(|e| panic!("sending raw frames from {}: {e:#}", guest.ns.name()));
        assert_eq!(n, batch.len(), "raw frames sent from {}", guest.ns.name());
        sent += n as u64;
    }
    sent
}
