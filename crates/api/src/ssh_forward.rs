//! `--ssh` for remote builds: the client's ssh agents, forwarded over the build session.
//!
//! The server gives the build one unix socket per agent id ([`ServerAgents`]); the solver uses
//! it as it uses a local agent. Every connection a step opens there becomes a numbered
//! connection on the session stream (`SshOpen`, then `SshData` both ways); the client
//! ([`ClientAgents`]) connects each to its own agent (or to an `ssh-agent` it started for key
//! files) and relays the bytes. The agent never leaves the client: only what a step asks it
//! and its answers cross the network, as with `docker buildx build --ssh` against a remote
//! BuildKit.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::proto::{BuildServerMessage, SshData, SshOpen, build_server_message};

/// Largest piece of an agent conversation in one message (agent messages are small).
const PIECE: usize = 64 * 1024;

/// A spawned task that ends when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a piece of a connection's writing side carries.
enum Write {
    Data(Vec<u8>),
    Close,
}

/// The server's end: a socket per forwarded agent, in a private directory.
pub struct ServerAgents {
    _dir: tempfile::TempDir,
    sockets: HashMap<String, PathBuf>,
    opened: mpsc::UnboundedReceiver<(String, UnixStream)>,
    next: u32,
    /// The socket listeners, stopped when dropped.
    _listeners: Vec<Task>,
    connections: Connections,
}

type Tx = mpsc::Sender<Result<BuildServerMessage, tonic::Status>>;

fn message(m: build_server_message::Msg) -> Result<BuildServerMessage, tonic::Status> {
    Ok(BuildServerMessage { msg: Some(m) })
}

impl ServerAgents {
    /// Listens on a socket for each of `ids`. Must run inside the runtime.
    pub fn start(ids: &[String]) -> std::io::Result<ServerAgents> {
        // Under the temp dir, not the state root: a socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new().prefix("builder-ssh-").tempdir()?;
        let (otx, opened) = mpsc::unbounded_channel();
        let mut sockets = HashMap::new();
        let mut tasks = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let path = dir.path().join(format!("{n}.sock"));
            let listener = tokio::net::UnixListener::bind(&path)?;
            sockets.insert(id.clone(), path);
            let (id, otx) = (id.clone(), otx.clone());
            tasks.push(Task(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    if otx.send((id.clone(), stream)).is_err() {
                        return;
                    }
                }
            })));
        }
        Ok(ServerAgents { _dir: dir, sockets, opened, next: 0, _listeners: tasks, connections: Connections::default() })
    }

    /// The socket of each agent id, for the build's ssh sources.
    pub fn sockets(&self) -> &HashMap<String, PathBuf> {
        &self.sockets
    }

    /// The next connection a build step opened (pending forever once the listeners are gone).
    pub async fn next_connection(&mut self) -> Option<(String, UnixStream)> {
        self.opened.recv().await
    }

    /// Tells the client about a new connection and relays what the step writes to it.
    pub async fn relay(&mut self, id: String, stream: UnixStream, tx: &Tx) {
        let connection = self.next;
        self.next += 1;
        if tx.send(message(build_server_message::Msg::SshOpen(SshOpen { connection, id }))).await.is_err() {
            return;
        }
        let tx = tx.clone();
        self.connections.add(connection, stream, move |data| {
            let tx = tx.clone();
            async move { tx.send(message(build_server_message::Msg::SshData(data))).await.is_ok() }
        });
    }

    /// Bytes the client's agent sent on a connection.
    pub fn from_client(&mut self, d: SshData) {
        self.connections.deliver(d);
    }
}

/// The relayed connections of one end: a reading task and a writer per connection.
#[derive(Default)]
struct Connections {
    writers: HashMap<u32, mpsc::UnboundedSender<Write>>,
    tasks: Vec<Task>,
}

impl Connections {
    /// Relays what `stream` says through `send` (false once the session is gone) and keeps
    /// its writing side for `deliver`.
    fn add<F, Fut>(&mut self, connection: u32, stream: UnixStream, send: F)
    where
        F: Fn(SshData) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let (mut read, write) = stream.into_split();
        self.tasks.push(Task(tokio::spawn(async move {
            let mut buf = vec![0u8; PIECE];
            loop {
                let n = read.read(&mut buf).await.unwrap_or(0);
                if !send(SshData { connection, data: buf[..n].to_vec().into(), close: n == 0 }).await || n == 0 {
                    return;
                }
            }
        })));
        self.writers.insert(connection, writer(write));
    }

    /// Bytes the other end sent on a connection, written in order; `close` ends it.
    fn deliver(&mut self, d: SshData) {
        let Some(w) = self.writers.get(&d.connection) else { return };
        if !d.data.is_empty() {
            let _ = w.send(Write::Data(d.data.to_vec()));
        }
        if d.close {
            let _ = w.send(Write::Close);
            self.writers.remove(&d.connection);
        }
    }
}

/// A task writing what arrives for one connection, in order.
fn writer(mut write: OwnedWriteHalf) -> mpsc::UnboundedSender<Write> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
    tokio::spawn(async move {
        while let Some(w) = rx.recv().await {
            match w {
                Write::Data(d) => {
                    if write.write_all(&d).await.is_err() {
                        return;
                    }
                }
                Write::Close => {
                    let _ = write.shutdown().await;
                    return;
                }
            }
        }
    });
    tx
}

/// The client's end: its agents by id, and the connections the server opened to them.
pub struct ClientAgents {
    sockets: HashMap<String, PathBuf>,
    connections: Connections,
    /// Agents started for key files (`--ssh ID=KEY`), stopped with the session.
    _started: Vec<solver::ssh::KeyAgent>,
    _tmp: Option<tempfile::TempDir>,
}

impl ClientAgents {
    /// The agents of `--ssh`: a socket as given, or an `ssh-agent` started for key files.
    pub fn new(ssh: &HashMap<String, solver::ssh::SshSource>) -> crate::Result<ClientAgents> {
        let mut sockets = HashMap::new();
        let mut started = Vec::new();
        let mut tmp = None;
        for (id, source) in ssh {
            match source {
                solver::ssh::SshSource::Agent(p) => {
                    sockets.insert(id.clone(), p.clone());
                }
                solver::ssh::SshSource::Keys(keys) => {
                    let dir = match &tmp {
                        Some(d) => d,
                        None => tmp.insert(tempfile::tempdir().map_err(crate::ApiError::io("create a temporary directory in", std::env::temp_dir()))?),
                    };
                    let agent = solver::ssh::KeyAgent::start(id, keys, dir.path()).map_err(|e| crate::ApiError::Invalid(e.to_string()))?;
                    sockets.insert(id.clone(), agent.socket().to_path_buf());
                    started.push(agent);
                }
            }
        }
        Ok(ClientAgents { sockets, connections: Connections::default(), _started: started, _tmp: tmp })
    }

    /// The server opened a connection to agent `id`: connects to it here and relays what it
    /// answers through `send` (which returns false once the session is gone).
    pub async fn open<F, Fut>(&mut self, open: SshOpen, send: F)
    where
        F: Fn(SshData) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let connection = open.connection;
        let stream = match self.sockets.get(&open.id) {
            Some(p) => UnixStream::connect(p).await.map_err(|e| tracing::warn!("ssh agent {:?} at {}: {e}", open.id, p.display())).ok(),
            None => None,
        };
        let Some(stream) = stream else {
            send(SshData { connection, data: Default::default(), close: true }).await;
            return;
        };
        self.connections.add(connection, stream, send);
    }

    /// Bytes a build step sent to the agent.
    pub fn from_server(&mut self, d: SshData) {
        self.connections.deliver(d);
    }

    /// Whether any agent is forwarded.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::build_server_message::Msg;

    /// A step's connection to the server's socket reaches the client's agent and back.
    #[test]
    fn a_connection_on_the_server_is_relayed_to_the_clients_agent() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tmp");
            // The "agent": answers each message in capitals.
            let agent_path = dir.path().join("agent.sock");
            let agent = tokio::net::UnixListener::bind(&agent_path).expect("bind");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = agent.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
            let mut server = ServerAgents::start(&["default".to_string()]).expect("server sockets");
            let socket = server.sockets()["default"].clone();
            let mut client = ClientAgents::new(&HashMap::from([("default".to_string(), solver::ssh::SshSource::Agent(agent_path))])).expect("client agents");
            let (stx, mut srx) = mpsc::channel(16);
            let (ctx, mut crx) = mpsc::channel::<SshData>(16);

            // The build step.
            let mut step = tokio::spawn(async move {
                let mut s = UnixStream::connect(&socket).await.expect("connect");
                s.write_all(b"list keys").await.expect("write");
                let mut buf = [0u8; 9];
                s.read_exact(&mut buf).await.expect("read");
                buf
            });
            // The session: server and client ends wired back to back.
            let answer = loop {
                tokio::select! {
                    Some((id, stream)) = server.next_connection() => server.relay(id, stream, &stx).await,
                    Some(m) = srx.recv() => match m.expect("message").msg {
                        Some(Msg::SshOpen(open)) => {
                            let ctx = ctx.clone();
                            client.open(open, move |d| { let ctx = ctx.clone(); async move { ctx.send(d).await.is_ok() } }).await;
                        }
                        Some(Msg::SshData(d)) => client.from_server(d),
                        other => panic!("unexpected {other:?}"),
                    },
                    Some(d) = crx.recv() => server.from_client(d),
                    r = &mut step => break r.expect("step"),
                }
            };
            assert_eq!(&answer, b"LIST KEYS");
        });
    }
}
