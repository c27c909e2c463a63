//! `loopback-floor`: what the machine pays just to move Twilio-paced traffic
//! over loopback TCP, with no WebSocket, JSON or Hark at all.
//!
//! N connections each send a 400-byte message (a Twilio `media` frame's size)
//! every 20 ms; a receiver reads them. Sender and receiver run on their own
//! threads (single-threaded runtimes, like Hark's workers) and report the CPU
//! their thread used. This is the floor under any load test of Hark run on
//! the same machine as its load generator.
//!
//! `cargo run --release -p hark-bench --bin loopback-floor -- 500 1000 2000`

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGE: usize = 400;
const SECS: u64 = 10;

/// CPU seconds used so far by the calling thread (Linux).
fn thread_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs `conns` paced senders against `addr` and returns the sender thread's CPU share.
fn send(addr: std::net::SocketAddr, conns: usize) -> f64 {
    runtime().block_on(async move {
        for i in 0..conns {
            tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return;
                };
                let _ = s.set_nodelay(true);
                let msg = [b'x'; MESSAGE];
                // Spread the connections' phases over the 20 ms period.
                let phase =
                    Duration::from_micros((i as u64 * 20_000 / conns.max(1) as u64) % 20_000);
                let mut next = tokio::time::Instant::now() + phase;
                loop {
                    tokio::time::sleep_until(next).await;
                    next += Duration::from_millis(20);
                    if s.write_all(&msg).await.is_err() {
                        return;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (cpu0, t0) = (thread_cpu(), Instant::now());
        tokio::time::sleep(Duration::from_secs(SECS)).await;
        (thread_cpu() - cpu0) / t0.elapsed().as_secs_f64() * 100.0
    })
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![500, 1000, 2000]
    } else {
        counts
    };
    for conns in counts {
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bind: {e}");
                std::process::exit(1);
            }
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let _ = listener.set_nonblocking(true);
        let receiver = std::thread::spawn(move || {
            runtime().block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return 0.0;
                };
                tokio::spawn(async move {
                    while let Ok((mut s, _)) = listener.accept().await {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(async move {
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        });
                    }
                });
                tokio::time::sleep(Duration::from_secs(3)).await;
                let (cpu0, t0) = (thread_cpu(), Instant::now());
                tokio::time::sleep(Duration::from_secs(SECS)).await;
                (thread_cpu() - cpu0) / t0.elapsed().as_secs_f64() * 100.0
            })
        });
        let sender = send(addr, conns);
        let receiver = receiver.join().unwrap_or(0.0);
        println!(
            "{conns} connections, {} messages/s of {MESSAGE} bytes: sender {sender:.0}% of a core, receiver {receiver:.0}%, together {:.0}%",
            conns * 50,
            sender + receiver
        );
    }
}
