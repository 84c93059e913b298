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
        let mut admin = self.admin();
        admin.send(&["EVAL", &script, "0"]);
        let stalled = std::thread::spawn(move || {
            let _ = admin.reply();
        });
        // Let Redis start the script before anything else reaches it.
        std::thread::sleep(Duration::from_millis(50));
        stalled
    }

    /// A plain connection for commands of the test's own.
    pub fn admin(&self) -> Admin {
        let conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connects to redis");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Admin { conn }
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

/// A raw RESP connection to the test's redis-server.
pub struct Admin {
    conn: TcpStream,
}

impl Admin {
    /// Sends a command without waiting for its reply.
    pub fn send(&mut self, args: &[&str]) {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.conn.write_all(cmd.as_bytes()).expect("sends to redis");
    }

    /// The raw reply (one read: the replies these tests ask for are small).
    pub fn reply(&mut self) -> String {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.conn.read(&mut buf).expect("redis replies");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Runs a command and returns its raw reply.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }
}
