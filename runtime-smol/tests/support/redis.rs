//! A throwaway `redis-server` on a free loopback port, for cluster tests.
//! Tests skip (loudly) when the binary is not installed.
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or explains on stderr why it cannot (then the test should return).
    pub fn start(test: &str) -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut server = RedisServer { port, child: None };
        if !server.spawn() {
            eprintln!("SKIPPED {test}: redis-server is not installed (apt-get install redis-server; .ci/run installs it)");
            return None;
        }
        Some(server)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Makes the server answer nobody for `d` (a script that busy-waits, as
    /// a slow Redis would), from a thread; returns once the stall began.
    pub fn stall(&self, d: Duration) -> std::thread::JoinHandle<()> {
        let script = format!(
            "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
             while true do t = redis.call('TIME') \
             if t[1] * 1000000 + t[2] - s > {} then return 1 end end",
            d.as_micros()
        );
        let cmd = format!(
            "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
            script.len()
        );
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connects to redis");
        conn.write_all(cmd.as_bytes()).expect("sends the stall");
        let stalled = std::thread::spawn(move || {
            let mut reply = [0u8; 16];
            let _ = conn.read(&mut reply);
        });
        // Let Redis start the script before anything else reaches it.
        std::thread::sleep(Duration::from_millis(50));
        stalled
    }

    /// Stops the server (as if it crashed).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server restarts");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
