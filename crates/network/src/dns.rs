//! The embedded name server of user-defined networks, as Docker's at 127.0.0.11: each
//! container's supervisor serves it inside the container's namespace (UDP and TCP port 53 on
//! 127.0.0.11, sockets bound there before the container starts). Names of containers on the
//! same networks (container name, short id, aliases) come from the attachment records under
//! `<root>/networks/attachments/`, read again whenever that directory changes, so a container
//! started later is found and a removed one is not. Other names go to the host's servers from
//! the supervisor's own namespace, as Docker forwards them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};

/// The address containers on user-defined networks send queries to.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// How long an answer may be cached (Docker's 600 s).
const TTL: u32 = 600;
/// A supervisor that died without a trace is noticed within this long.
const REFRESH: Duration = Duration::from_secs(1);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Names and their addresses, as read from the records at a time and a directory mtime.
type Snapshot = (SystemTime, Instant, Vec<(String, Ipv4Addr)>);

/// The names one container can resolve, rebuilt when the records change.
struct Table {
    root: PathBuf,
    container: String,
    cached: Mutex<Option<Snapshot>>,
}

impl Table {
    fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let dir = crate::attachments_dir(&self.root);
        let mtime = std::fs::metadata(&dir).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached.as_ref().is_some_and(|(m, at, _)| *m == mtime && at.elapsed() < REFRESH);
        if !fresh {
            *cached = Some((mtime, Instant::now(), self.build()));
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        cached.as_ref().and_then(|(_, _, names)| names.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip))
    }

    fn build(&self) -> Vec<(String, Ipv4Addr)> {
        let records = crate::live_records(&self.root);
        let Some(me) = records.iter().find(|r| r.container == self.container) else { return Vec::new() };
        // Only the user-defined networks: the default bridge has no name service, as Docker's.
        let mine: Vec<&str> = me.endpoints.iter().filter(|e| e.dns).map(|e| e.network_id.as_str()).collect();
        let mut names = Vec::new();
        for r in &records {
            for e in r.endpoints.iter().filter(|e| mine.contains(&e.network_id.as_str())) {
                let short = r.container.get(..12).unwrap_or(&r.container).to_string();
                for n in [r.name.clone(), short].into_iter().chain(e.aliases.iter().cloned()) {
                    names.push((n.to_ascii_lowercase(), e.ip));
                }
            }
        }
        names
    }
}

/// What to do with one query.
enum Reply {
    Local(Vec<u8>),
    Forward,
    Drop,
}

fn answer(table: &Table, query: &[u8]) -> Reply {
    let Ok(msg) = Message::from_vec(query) else { return Reply::Drop };
    if msg.message_type() != MessageType::Query || msg.op_code() != OpCode::Query {
        return Reply::Forward;
    }
    let [q] = msg.queries() else { return Reply::Forward };
    let name = q.name().to_ascii();
    let Some(ip) = table.lookup(&name) else { return Reply::Forward };
    let mut header = Header::response_from_request(msg.header());
    header.set_recursion_available(true).set_response_code(ResponseCode::NoError);
    let mut reply = Message::new();
    reply.set_header(header);
    reply.add_query(q.clone());
    // A known name with no IPv6 address: an empty answer, not a forward (Docker's behaviour).
    if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
        reply.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
    }
    reply.to_vec().map(Reply::Local).unwrap_or(Reply::Drop)
}

fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut reply = Message::error_msg(msg.id(), msg.op_code(), ResponseCode::ServFail);
    reply.add_queries(msg.queries().to_vec());
    reply.set_recursion_desired(msg.recursion_desired()).set_recursion_available(true);
    reply.to_vec().ok()
}

/// Sends `query` to each upstream in turn; the first answer wins.
fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(sock) = UdpSocket::bind(bind) else { continue };
        if sock.set_read_timeout(Some(FORWARD_TIMEOUT)).is_err() || sock.connect(up).is_err() || sock.send(query).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(n) = sock.recv(&mut buf) {
            buf.truncate(n);
            return Some(buf);
        }
    }
    servfail(query)
}

/// Serves the container's queries on `udp` and `tcp` (bound inside its namespace) from
/// threads of this process, for as long as the process lives.
pub fn serve(udp: UdpSocket, tcp: TcpListener, root: PathBuf, container: String, upstreams: Vec<SocketAddr>) {
    let table = Arc::new(Table { root, container, cached: Mutex::new(None) });
    let upstreams = Arc::new(upstreams);
    {
        let (table, upstreams) = (table.clone(), upstreams.clone());
        std::thread::spawn(move || {
            let udp = Arc::new(udp);
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
                let query = buf[..n].to_vec();
                match answer(&table, &query) {
                    Reply::Local(r) => {
                        let _ = udp.send_to(&r, from);
                    }
                    Reply::Drop => {}
                    Reply::Forward => {
                        let (udp, upstreams) = (udp.clone(), upstreams.clone());
                        std::thread::spawn(move || {
                            if let Some(r) = forward(&upstreams, &query) {
                                let _ = udp.send_to(&r, from);
                            }
                        });
                    }
                }
            }
        });
    }
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            let (table, upstreams) = (table.clone(), upstreams.clone());
            std::thread::spawn(move || serve_tcp(conn, &table, &upstreams));
        }
    });
}

fn serve_tcp(mut conn: TcpStream, table: &Table, upstreams: &[SocketAddr]) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut query).is_err() {
            return;
        }
        let reply = match answer(table, &query) {
            Reply::Local(r) => Some(r),
            Reply::Forward => forward(upstreams, &query),
            Reply::Drop => None,
        };
        let Some(reply) = reply else { return };
        let Ok(n) = u16::try_from(reply.len()) else { return };
        if conn.write_all(&n.to_be_bytes()).and_then(|()| conn.write_all(&reply)).is_err() {
            return;
        }
    }
}
