//! The client the CLI uses when `--addr` / `$BUILDER_HOST` is set. Blocking calls (the CLI is
//! not async); each `Remote` owns a small runtime.
//!
//! TLS and auth come from the environment, so every command gets them without new flags:
//! `BUILDER_TLS_CACERT` (turns TLS on), `BUILDER_TLS_CERT` + `BUILDER_TLS_KEY` (mutual TLS),
//! `BUILDER_TLS_SERVER_NAME` (the name in the server's certificate, default: the host),
//! `BUILDER_TOKEN` or `BUILDER_TOKEN_FILE` (the bearer token).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::addr::Address;
use crate::auth::SendToken;
use crate::context::select::Selection;
use crate::context::{CHUNK_SIZE, MANIFEST_PART, walk};
use crate::output::OutputWriter;
use crate::convert;
use crate::engine::{BuildOptions, BuildOutcome, DiskUsage, ImageSummary, PruneOutcome, PushOutcome};
use crate::error::{ApiError, Result, transport_hint};
use crate::proto::build_client_message::Msg as Out;
use crate::proto::build_server_message::Msg as In;
use crate::proto::control_client::ControlClient;
use crate::proto::{self, BuildClientMessage, FileEntry};
use crate::server::MAX_MESSAGE_SIZE;

/// TLS settings of a client, as PEM.
#[derive(Clone, Default)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    /// Certificate and key for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub server_name: Option<String>,
}

/// How to reach a server.
#[derive(Clone)]
pub struct ClientConfig {
    pub addr: Address,
    pub token: Option<String>,
    pub tls: Option<ClientTls>,
    /// Where the client remembers the file lists it synced, so later builds send only deltas
    /// (default `$XDG_CACHE_HOME/builder/remote`, else `~/.cache/builder/remote`). `None`: always
    /// send the whole list.
    pub cache_dir: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(ApiError::io("read", path))
}

impl ClientConfig {
    /// `addr` plus TLS and token settings from the environment (see the module docs).
    pub fn from_env(addr: &str) -> Result<ClientConfig> {
        let addr = Address::parse(addr)?;
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let token = match (std::env::var("BUILDER_TOKEN").ok().filter(|t| !t.is_empty()), var("BUILDER_TOKEN_FILE")) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(String::from_utf8_lossy(&read(&f)?).trim().to_string()),
            (None, None) => None,
        };
        let tls = match var("BUILDER_TLS_CACERT") {
            None => None,
            Some(ca) => {
                let identity = match (var("BUILDER_TLS_CERT"), var("BUILDER_TLS_KEY")) {
                    (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
                    (None, None) => None,
                    _ => return Err(ApiError::Tls("BUILDER_TLS_CERT and BUILDER_TLS_KEY go together".into())),
                };
                Some(ClientTls { ca_pem: read(&ca)?, identity, server_name: std::env::var("BUILDER_TLS_SERVER_NAME").ok() })
            }
        };
        let cache_dir = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache"))).map(|c| c.join("builder/remote"));
        Ok(ClientConfig { addr, token, tls, cache_dir })
    }
}

type Grpc = ControlClient<InterceptedService<Channel, SendToken>>;

/// A connection to a `builder serve`.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: Grpc,
    channel: InterceptedService<Channel, SendToken>,
    addr: Address,
    tls: bool,
    cache_dir: Option<PathBuf>,
}

/// What a remote build produced, and what crossed the network for it.
#[derive(Clone, Debug, Default)]
pub struct RemoteBuild {
    pub outcome: BuildOutcome,
    pub context: proto::ContextSynced,
    /// Bytes of the session's messages this client sent (request, file list, contents), as
    /// encoded on the wire.
    pub bytes_sent: u64,
}

impl Remote {
    pub fn connect(cfg: &ClientConfig) -> Result<Remote> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ApiError::Connect { addr: cfg.addr.to_string(), reason: format!("start runtime: {e}") })?;
        let channel = rt.block_on(connect_channel(cfg))?;
        let channel = InterceptedService::new(channel, SendToken::new(cfg.token.as_deref())?);
        let client = ControlClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE).max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Remote { rt, client, channel, addr: cfg.addr.clone(), tls: cfg.tls.is_some(), cache_dir: cfg.cache_dir.clone() })
    }

    pub fn addr(&self) -> &Address {
        &self.addr
    }

    /// Builds `context` on the server: syncs the context, renders progress through `on_event`
    /// (the solver's own events), writes the file outputs the options name, returns the result.
    /// The Dockerfile's bytes and name are in `options`; `.dockerignore` rules are found the way
    /// a local build finds them.
    pub fn build(&self, options: &BuildOptions, context: &Path, on_event: impl FnMut(&solver::Event)) -> Result<RemoteBuild> {
        self.build_until(options, context, &Interrupt::default(), on_event)
    }

    /// [`Remote::build`], abandoned as soon as `interrupt` is triggered (Ctrl-C): the session
    /// stream is closed at once, so the server cancels the build.
    pub fn build_until(&self, options: &BuildOptions, context: &Path, interrupt: &Interrupt, mut on_event: impl FnMut(&solver::Event)) -> Result<RemoteBuild> {
        let context = context.canonicalize().map_err(ApiError::io("open build context", context))?;
        let ignore = walk::ignore_rules(&context, &options.dockerfile_name)?;
        let specific = format!("{}.dockerignore", options.dockerfile_name);
        let always = [".dockerignore", specific.as_str(), options.dockerfile_name.as_str()];
        let mut outputs = OutputWriter::new(&options.outputs, &options.tags)?;
        let agents = crate::ssh_forward::ClientAgents::new(&options.ssh);
        let key = context_key(&context);
        let last_sync = self.cache_dir.as_ref().map(|d| LastSync::path(d, &self.addr, &key));
        let previous = last_sync.as_deref().and_then(LastSync::load);
        let previous_generation = previous.as_ref().map(|p| p.generation.clone());
        let mut client = self.client.clone();
        let interrupted = interrupt.0.clone();
        let session = async move {
            // Inside the runtime: forwarded agent connections are tasks of it.
            let mut agents = agents?;
            let (tx, rx) = mpsc::channel::<BuildClientMessage>(8);
            let out = Outbox { tx, sent: Arc::new(AtomicU64::new(0)) };
            let mut request = convert::options_to_proto(options, key);
            if let Some(p) = &previous {
                request.manifest_base = p.generation.clone();
            }
            out.send(Out::Request(request)).await?;
            let mut stream = client.build(ReceiverStream::new(rx)).await?.into_inner();
            // The server says which paths the build reads (after resolving the base images).
            let selection = loop {
                match next(&mut stream).await? {
                    In::Progress(p) => {
                        if let Some(ev) = convert::event_from_proto(p) {
                            on_event(&ev);
                        }
                    }
                    In::Selection(s) => break Selection::from_proto(s),
                    _ => return Err(ApiError::Protocol("the server did not say which context paths the build reads".into())),
                }
            };
            // The ignore files always go (the server's build reads its rules from them); the
            // Dockerfile travels in the request, and goes as a context file only when read.
            let always = if selection == Selection::Everything { &always[..] } else { &always[..2] };
            let entries = tokio::task::block_in_place(|| walk::list(&context, &ignore, always, &selection))?;
            match previous.as_ref().map(|p| crate::context::delta(&p.entries, &entries)) {
                Some((changed, removed)) => out.manifest(changed, removed, true).await?,
                None => out.manifest(entries.clone(), Vec::new(), false).await?,
            }
            let mut need = match next(&mut stream).await? {
                In::Need(n) => n,
                _ => return Err(ApiError::Protocol("the server did not say which files it needs".into())),
            };
            if need.full_manifest {
                // The server lost the list our delta was against: send it whole.
                out.manifest(entries.clone(), Vec::new(), false).await?;
                need = match next(&mut stream).await? {
                    In::Need(n) if !n.full_manifest => n,
                    _ => return Err(ApiError::Protocol("the server did not say which files it needs".into())),
                };
            }
            let by_path: HashMap<&str, &FileEntry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
            let mut wanted = Vec::with_capacity(need.paths.len());
            for p in &need.paths {
                let e = by_path.get(p.as_str()).ok_or_else(|| ApiError::Protocol(format!("the server asked for {p:?}, which is not in the context")))?;
                wanted.push((*e).clone());
            }
            // Send the files on a task of their own while this one reads the server's answers
            // (aborted if this session is abandoned, so nothing keeps the stream open).
            let sender = AbortOnDrop(tokio::spawn(send_files(out.clone(), context.clone(), wanted)));
            let mut result = RemoteBuild::default();
            let mut sender = Some(sender);
            loop {
                let m = match next(&mut stream).await {
                    Ok(m) => m,
                    Err(e) => {
                        // A failure while sending files explains the server's error best.
                        if let Some(mut s) = sender.take()
                            && let Ok(Err(send_err)) = (&mut s.0).await {
                                return Err(send_err);
                            }
                        return Err(e);
                    }
                };
                match m {
                    In::Synced(s) => {
                        if let Some(mut sender) = sender.take() {
                            (&mut sender.0).await.map_err(|e| ApiError::Protocol(format!("file sender crashed: {e}")))??;
                        }
                        if let Some(path) = last_sync.as_ref().filter(|_| previous_generation.as_ref() != Some(&s.generation)) {
                            // Only an optimisation: a failure means a full list next time.
                            if let Err(e) = (LastSync { generation: s.generation.clone(), entries: entries.clone() }).save(path) {
                                tracing::debug!("saving {}: {e}", path.display());
                            }
                        }
                        on_event(&solver::Event::Note {
                            message: format!("transferring context: {} of {} files, {} bytes of content", s.files_received, s.files_total, s.bytes_received),
                        });
                        result.context = s;
                    }
                    In::Progress(p) => {
                        if let Some(ev) = convert::event_from_proto(p) {
                            on_event(&ev);
                        }
                    }
                    In::Output(part) => tokio::task::block_in_place(|| outputs.accept(part))?,
                    In::SshOpen(open) => {
                        let out = out.clone();
                        agents.open(open, move |d| {
                            let out = out.clone();
                            async move { out.send(Out::Ssh(d)).await.is_ok() }
                        })
                        .await;
                    }
                    In::SshData(d) => agents.from_server(d),
                    In::Result(r) => {
                        if !outputs.complete() {
                            return Err(ApiError::Protocol("the build ended before its file outputs were complete".into()));
                        }
                        result.outcome = convert::outcome_from_proto(r);
                        result.bytes_sent = out.sent.load(Ordering::Relaxed);
                        return Ok(result);
                    }
                    In::Need(_) => return Err(ApiError::Protocol("the server asked for files twice".into())),
                    In::Selection(_) => return Err(ApiError::Protocol("the server sent the context selection twice".into())),
                }
            }
        };
        let result = self.rt.block_on(async move {
            tokio::select! {
                r = session => r,
                _ = interrupted.notified() => Err(ApiError::Interrupted),
            }
        });
        result.map_err(|e| self.explain(e))
    }

    /// A transport failure (the connection broke, the TLS handshake failed) as a connection
    /// error that says what to check; the server's own errors pass through.
    fn explain(&self, e: ApiError) -> ApiError {
        let ApiError::Status(s) = &e else { return e };
        let transport = matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown) && std::error::Error::source(s).is_some();
        if !transport {
            return e;
        }
        let mut msg = s.message().to_string();
        let mut src = std::error::Error::source(s);
        while let Some(c) = src {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            src = c.source();
        }
        let hint = if self.tls {
            " (check BUILDER_TLS_CACERT, and for a mutual-TLS server BUILDER_TLS_CERT and BUILDER_TLS_KEY)"
        } else {
            " (the server closed the connection; if it uses TLS, set BUILDER_TLS_CACERT to its CA certificate, and for mutual TLS also BUILDER_TLS_CERT and BUILDER_TLS_KEY)"
        };
        ApiError::Connect { addr: self.addr.to_string(), reason: format!("{msg}{hint}") }
    }

    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.images(proto::ImagesRequest {})).map_err(|e| self.explain(status(e)))?;
        Ok(r.into_inner().images.into_iter().map(convert::image_from_proto).collect())
    }

    pub fn push(&self, reference: &str, destination: Option<&str>, insecure_registries: &[String], mut on_note: impl FnMut(&str)) -> Result<PushOutcome> {
        let mut c = self.client.clone();
        let req = proto::PushRequest { reference: reference.into(), destination: destination.unwrap_or_default().into(), insecure_registries: insecure_registries.to_vec() };
        let result = self.rt.block_on(async move {
            let mut s = c.push(req).await.map_err(status)?.into_inner();
            while let Some(ev) = s.message().await.map_err(status)? {
                match ev.event {
                    Some(proto::push_event::Event::Note(n)) => on_note(&n.message),
                    Some(proto::push_event::Event::Done(d)) => return Ok(PushOutcome { reference: d.reference, digest: d.digest }),
                    None => {}
                }
            }
            Err(ApiError::Protocol("the push ended without a result".into()))
        });
        result.map_err(|e| self.explain(e))
    }

    pub fn prune(&self, all: bool, keep_storage: Option<u64>) -> Result<PruneOutcome> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.prune(proto::PruneRequest { all, keep_storage: keep_storage.unwrap_or(0) })).map_err(|e| self.explain(status(e)))?;
        Ok(convert::prune_from_proto(r.into_inner()))
    }

    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.disk_usage(proto::DiskUsageRequest {})).map_err(|e| self.explain(status(e)))?;
        Ok(convert::usage_from_proto(r.into_inner()))
    }

    pub fn info(&self) -> Result<proto::InfoResponse> {
        let mut c = self.client.clone();
        Ok(self.rt.block_on(c.info(proto::InfoRequest {})).map_err(|e| self.explain(status(e)))?.into_inner())
    }

    /// The standard gRPC health check of the whole server.
    pub fn health(&self) -> Result<bool> {
        let mut h = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let r = self.rt.block_on(h.check(tonic_health::pb::HealthCheckRequest { service: String::new() })).map_err(|e| self.explain(status(e)))?;
        Ok(r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    }
}

/// Builds remotely in one call: connect with [`ClientConfig::from_env`], sync, build.
pub fn build(addr: &str, options: &BuildOptions, context: &Path, on_event: impl FnMut(&solver::Event)) -> Result<RemoteBuild> {
    Remote::connect(&ClientConfig::from_env(addr)?)?.build(options, context, on_event)
}

/// [`build`], abandoned when `interrupt` is triggered (see [`Remote::build_until`]).
pub fn build_until(addr: &str, options: &BuildOptions, context: &Path, interrupt: &Interrupt, on_event: impl FnMut(&solver::Event)) -> Result<RemoteBuild> {
    Remote::connect(&ClientConfig::from_env(addr)?)?.build_until(options, context, interrupt, on_event)
}

/// Stops a remote build from another thread (a Ctrl-C handler): the build call returns
/// [`ApiError::Interrupted`] and its session is closed, which cancels the build on the server.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<tokio::sync::Notify>);

impl Interrupt {
    pub fn trigger(&self) {
        // A stored permit: a trigger before the build waits still counts.
        self.0.notify_one();
    }
}

/// A spawned task that ends when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn closed() -> ApiError {
    ApiError::Protocol("the server closed the build session".into())
}

fn status(s: tonic::Status) -> ApiError {
    ApiError::Status(s)
}

async fn next(stream: &mut tonic::Streaming<proto::BuildServerMessage>) -> Result<In> {
    match stream.message().await? {
        Some(proto::BuildServerMessage { msg: Some(m) }) => Ok(m),
        Some(_) => Err(ApiError::Protocol("empty message from the server".into())),
        None => Err(ApiError::Protocol("the server ended the build session without a result".into())),
    }
}

/// The client's side of the session stream, counting the encoded bytes it sends.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<BuildClientMessage>,
    sent: Arc<AtomicU64>,
}

impl Outbox {
    async fn send(&self, m: Out) -> Result<()> {
        let msg = BuildClientMessage { msg: Some(m) };
        self.sent.fetch_add(prost::Message::encoded_len(&msg) as u64, Ordering::Relaxed);
        self.tx.send(msg).await.map_err(|_| closed())
    }

    /// Sends a file list (or a delta) in parts.
    async fn manifest(&self, entries: Vec<FileEntry>, removed: Vec<String>, delta: bool) -> Result<()> {
        let mut parts: Vec<Vec<FileEntry>> = entries.chunks(MANIFEST_PART).map(<[FileEntry]>::to_vec).collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        let n = parts.len();
        let mut removed = Some(removed);
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == n;
            let removed = if last { removed.take().unwrap_or_default() } else { Vec::new() };
            self.send(Out::Manifest(proto::ContextManifest { entries: part, last, delta, removed })).await?;
        }
        Ok(())
    }
}

/// Streams the asked-for files in chunks, small files batched into shared messages; returns
/// the content bytes sent.
async fn send_files(out: Outbox, context: PathBuf, files: Vec<FileEntry>) -> Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut sent = 0u64;
    let mut batch: Vec<proto::FileChunk> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut buf = vec![0u8; CHUNK_SIZE];
    for (index, entry) in files.into_iter().enumerate() {
        let index = u32::try_from(index).map_err(|_| ApiError::Protocol("too many files asked for".into()))?;
        let path = context.join(&entry.path);
        let mut f = tokio::fs::File::open(&path).await.map_err(ApiError::io("open", &path))?;
        let mut left = entry.size;
        loop {
            let want = usize::try_from(left.min((CHUNK_SIZE - batch_bytes) as u64)).unwrap_or(CHUNK_SIZE);
            let mut n = 0;
            while n < want {
                let r = f.read(&mut buf[n..want]).await.map_err(ApiError::io("read", &path))?;
                if r == 0 {
                    return Err(ApiError::Context { path: entry.path.clone(), reason: "the file got shorter during the transfer; build again".into() });
                }
                n += r;
            }
            left -= n as u64;
            sent += n as u64;
            batch_bytes += n;
            batch.push(proto::FileChunk { index, data: buf[..n].to_vec().into(), eof: left == 0 });
            // Per-chunk framing is small; flush on size, and by count so a message of many empty
            // files stays bounded too.
            if batch_bytes >= CHUNK_SIZE || batch.len() >= 4096 {
                let chunks = std::mem::take(&mut batch);
                batch_bytes = 0;
                if out.send(Out::Data(proto::FileData { chunks })).await.is_err() {
                    // The server ended the session; its status says why.
                    return Ok(sent);
                }
            }
            if left == 0 {
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.send(Out::Data(proto::FileData { chunks: batch })).await;
    }
    Ok(sent)
}

/// What this client last synced of a context to a server: the list the server holds, by
/// generation. Kept under the client's cache dir so the next build sends only a delta.
struct LastSync {
    generation: String,
    entries: Vec<FileEntry>,
}

impl LastSync {
    fn path(cache_dir: &Path, addr: &Address, context_key: &str) -> PathBuf {
        let id = blake3::hash(format!("{addr}\0{context_key}").as_bytes()).to_hex();
        cache_dir.join(format!("{}.pb", &id.as_str()[..32]))
    }

    fn load(path: &Path) -> Option<LastSync> {
        use prost::Message;
        let bytes = std::fs::read(path).ok()?;
        let m = proto::ContextManifest::decode(bytes.as_slice()).ok()?;
        // The generation rides in `removed`, the one field a stored list does not otherwise use.
        let generation = m.removed.into_iter().next()?;
        Some(LastSync { generation, entries: m.entries })
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        use prost::Message;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let bytes = proto::ContextManifest { entries: self.entries.clone(), removed: vec![self.generation.clone()], last: true, delta: false }.encode_to_vec();
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Names the server's mirror of this context: this machine, this user, this directory.
fn context_key(context: &Path) -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    format!("{host}:{}:{}", nix::unistd::getuid(), context.display())
}

async fn connect_channel(cfg: &ClientConfig) -> Result<Channel> {
    let addr = cfg.addr.to_string();
    let fail = |reason: String| ApiError::Connect { addr: addr.clone(), reason };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let uri = match &cfg.addr {
        Address::Tcp(hp) => format!("{scheme}://{hp}"),
        // The authority is not used to connect; the connector below dials the socket.
        Address::Unix(_) => format!("{scheme}://localhost"),
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| fail(e.to_string()))?.connect_timeout(std::time::Duration::from_secs(10)).tcp_nodelay(true);
    if let Some(tls) = &cfg.tls {
        let mut t = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = tls.server_name.clone().or_else(|| cfg.addr.host()) {
            t = t.domain_name(name);
        }
        endpoint = endpoint.tls_config(t).map_err(|e| ApiError::Tls(e.to_string()))?;
    }
    let connected = match &cfg.addr {
        Address::Tcp(_) => endpoint.connect().await,
        Address::Unix(path) => {
            let path = path.clone();
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
        }
    };
    connected.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        let hint = transport_hint(&msg);
        fail(format!("{msg}{hint}"))
    })
}
