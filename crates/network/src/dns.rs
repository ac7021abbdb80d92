//! The embedded name server of user-defined networks, as Docker's at 127.0.0.11: each
//! container's supervisor serves it inside the container's namespace (UDP and TCP port 53 on
//! 127.0.0.11, sockets bound there before the container starts). Names of containers on the
//! same networks (container name, short id, aliases) come from the attachment records under
//! `<root>/networks/attachments/`, read again whenever that directory changes, so a container
//! started later is found and a removed one is not. Other names go to the host's servers from
//! the supervisor's own namespace, as Docker forwards them.

use std::collections::HashMap;
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
struct Snapshot {
    mtime: SystemTime,
    at: Instant,
    names: HashMap<String, Ipv4Addr>,
}

/// The names one container can resolve, rebuilt when the records change.
struct Table {
    root: PathBuf,
    container: String,
    cached: Mutex<Option<Snapshot>>,
}

impl Table {
    /// The address of `name` (lower case, no trailing dot).
    fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let dir = crate::attachments_dir(&self.root);
        let mtime = std::fs::metadata(&dir).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached.as_ref().is_some_and(|c| c.mtime == mtime && c.at.elapsed() < REFRESH);
        if !fresh {
            *cached = Some(Snapshot { mtime, at: Instant::now(), names: self.build() });
        }
        cached.as_ref().and_then(|c| c.names.get(name).copied())
    }

    fn build(&self) -> HashMap<String, Ipv4Addr> {
        let records = crate::live_records(&self.root);
        let Some(me) = records.iter().find(|r| r.container == self.container) else { return HashMap::new() };
        // Only the user-defined networks: the default bridge has no name service, as Docker's.
        let mine: Vec<&str> = me.endpoints.iter().filter(|e| e.dns).map(|e| e.network_id.as_str()).collect();
        let mut names = HashMap::new();
        for r in &records {
            for e in r.endpoints.iter().filter(|e| mine.contains(&e.network_id.as_str())) {
                let short = r.container.get(..12).unwrap_or(&r.container).to_string();
                for n in [r.name.clone(), short].into_iter().chain(e.aliases.iter().cloned()) {
                    names.entry(n.to_ascii_lowercase()).or_insert(e.ip);
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

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// The question of a plain query (what resolvers send: a standard query with one question,
/// no answer or authority records; an EDNS OPT record in the additional section is ignored,
/// as a server without EDNS may): the end of the question in the message, its type and
/// class, and its name in lower case without the trailing dot, in `name`. None for
/// anything else, which then takes the general path.
fn plain_question(query: &[u8], name: &mut String) -> Option<(usize, u16, u16)> {
    let header = query.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    // QR = 0 and opcode QUERY; one question; no answers, no authority.
    if flags & 0xf800 != 0 || header[4..10] != [0, 1, 0, 0, 0, 0] {
        return None;
    }
    name.clear();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        // A compression pointer (or a reserved label type) in a question: not plain.
        if len > 63 {
            return None;
        }
        let label = query.get(at..at + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            // Names with dots or bytes outside printable ASCII inside a label go the general way.
            if c == b'.' || !c.is_ascii_graphic() {
                return None;
            }
            name.push(c.to_ascii_lowercase() as char);
        }
        at += len;
    }
    let tail = query.get(at..at + 4)?;
    Some((at + 4, u16::from_be_bytes([tail[0], tail[1]]), u16::from_be_bytes([tail[2], tail[3]])))
}

/// The answer to a plain query for a name of the table, written straight from the query's
/// bytes: its id and question, QR and RA set, RD kept, and for an A (or ANY) question one
/// record pointing back at the question's name. A known name of another type gets an empty
/// answer, as from Docker. `Forward` for a name the table does not have.
fn answer_plain(table: &Table, query: &[u8], end: usize, qtype: u16, qclass: u16, name: &str) -> Reply {
    let Some(ip) = table.lookup(name) else { return Reply::Forward };
    let with_record = qclass == CLASS_IN && (qtype == TYPE_A || qtype == TYPE_ANY);
    let mut out = Vec::with_capacity(end + 16);
    out.extend_from_slice(&query[..2]);
    // QR, opcode 0, RD as asked; RA; NOERROR.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80);
    out.extend_from_slice(&[0, 1, 0, u8::from(with_record), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    if with_record {
        out.extend_from_slice(&[0xc0, 0x0c, 0, TYPE_A as u8, 0, CLASS_IN as u8]);
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Reply::Local(out)
}

/// One query: the plain ones from their bytes, anything else through hickory-proto.
fn answer(table: &Table, query: &[u8], name: &mut String) -> Reply {
    match plain_question(query, name) {
        Some((end, qtype, qclass)) => answer_plain(table, query, end, qtype, qclass, name),
        None => answer_message(table, query),
    }
}

fn answer_message(table: &Table, query: &[u8]) -> Reply {
    let Ok(msg) = Message::from_vec(query) else { return Reply::Drop };
    if msg.message_type() != MessageType::Query || msg.op_code() != OpCode::Query {
        return Reply::Forward;
    }
    let [q] = msg.queries() else { return Reply::Forward };
    let name = q.name().to_ascii();
    let Some(ip) = table.lookup(&name.trim_end_matches('.').to_ascii_lowercase()) else { return Reply::Forward };
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
            let mut name = String::with_capacity(64);
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
                let query = &buf[..n];
                match answer(&table, query, &mut name) {
                    Reply::Local(r) => {
                        let _ = udp.send_to(&r, from);
                    }
                    Reply::Drop => {}
                    Reply::Forward => {
                        let (udp, upstreams, query) = (udp.clone(), upstreams.clone(), query.to_vec());
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
        let reply = match answer(table, &query, &mut String::new()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::Name;

    fn table(names: &[(&str, Ipv4Addr)]) -> Table {
        let snapshot = Snapshot { mtime: SystemTime::UNIX_EPOCH, at: Instant::now(), names: names.iter().map(|(n, ip)| (n.to_string(), *ip)).collect() };
        // A root without records: the directory's mtime stays the epoch, so the table is kept.
        Table { root: PathBuf::from("/nonexistent-builder-root"), container: "c".into(), cached: Mutex::new(Some(snapshot)) }
    }

    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().expect("encode")
    }

    fn reply(t: &Table, q: &[u8]) -> Option<Message> {
        match answer(t, q, &mut String::new()) {
            Reply::Local(r) => Some(Message::from_vec(&r).expect("a valid reply")),
            _ => None,
        }
    }

    #[test]
    fn plain_queries_are_answered_from_their_bytes_as_hickory_reads_them() {
        let t = table(&[("web", Ipv4Addr::new(172, 18, 0, 2)), ("db.alias", Ipv4Addr::new(172, 18, 0, 3))]);
        for (name, edns) in [("web", false), ("WEB.", true), ("db.alias", false)] {
            let q = query(name, RecordType::A, edns);
            assert!(plain_question(&q, &mut String::new()).is_some(), "{name}");
            let r = reply(&t, &q).expect("answered");
            assert_eq!((r.id(), r.message_type(), r.recursion_desired(), r.recursion_available(), r.response_code()), (0x1234, MessageType::Response, true, true, ResponseCode::NoError));
            assert_eq!(r.queries(), Message::from_vec(&q).expect("q").queries());
            let [a] = r.answers() else { panic!("one answer: {r:?}") };
            assert_eq!(a.name(), r.queries()[0].name());
            assert_eq!(a.ttl(), TTL);
            let want = if name == "db.alias" { Ipv4Addr::new(172, 18, 0, 3) } else { Ipv4Addr::new(172, 18, 0, 2) };
            assert_eq!(a.data(), &RData::A(A(want)));
        }
        // A known name without an IPv6 address: an empty answer, as the general path gives.
        let q = query("web", RecordType::AAAA, false);
        let r = reply(&t, &q).expect("answered");
        assert!(r.answers().is_empty() && r.response_code() == ResponseCode::NoError);
        let Reply::Local(general) = answer_message(&t, &q) else { panic!("general path") };
        assert_eq!(Message::from_vec(&general).expect("r").answers(), r.answers());
        // Unknown names are forwarded; garbage is dropped.
        assert!(matches!(answer(&t, &query("other.example", RecordType::A, false), &mut String::new()), Reply::Forward));
        assert!(matches!(answer(&t, &[1, 2, 3], &mut String::new()), Reply::Drop));
    }

    #[test]
    fn other_messages_take_the_general_path() {
        let t = table(&[("web", Ipv4Addr::new(172, 18, 0, 2))]);
        // Two questions.
        let mut m = Message::new();
        m.add_query(Query::query(Name::from_ascii("web").expect("n"), RecordType::A));
        m.add_query(Query::query(Name::from_ascii("web").expect("n"), RecordType::AAAA));
        let q = m.to_vec().expect("encode");
        assert!(plain_question(&q, &mut String::new()).is_none());
        assert!(matches!(answer(&t, &q, &mut String::new()), Reply::Forward));
        // A response is not a query; a truncated question is not plain.
        let mut r = query("web", RecordType::A, false);
        r[2] |= 0x80;
        assert!(plain_question(&r, &mut String::new()).is_none());
        let q = query("web", RecordType::A, false);
        assert!(plain_question(&q[..q.len() - 2], &mut String::new()).is_none());
    }
}
