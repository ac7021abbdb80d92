//! One build session: the request, the context sync, the build with its progress, the result.
//! A client that goes away (or a server that stops) cancels the build.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::context::mirror::{Mirror, MirrorError, Plan};
use crate::convert;
use crate::context::select::Selection;
use crate::engine::{BuildJob, BuildOptions, EngineError};
use crate::ssh_forward::ServerAgents;
use crate::proto::build_client_message::Msg as In;
use crate::proto::build_server_message::Msg as Out;
use crate::proto::{self, BuildClientMessage, BuildServerMessage, FileEntry};
use crate::server::{Shared, engine_status};

/// More entries than any real build context; protects the server's memory.
const MAX_ENTRIES: usize = 2_000_000;

type Tx = mpsc::Sender<Result<BuildServerMessage, Status>>;

/// Bytes of the client's messages, as encoded: what crossed the network for the context.
#[derive(Default)]
struct Wire {
    bytes: u64,
}

/// A file list as received: whole, or a delta against the stored one.
struct FileList {
    entries: Vec<FileEntry>,
    removed: Vec<String>,
    delta: bool,
}

async fn read_manifest(inbound: &mut Streaming<BuildClientMessage>, wire: &mut Wire) -> Result<FileList, Status> {
    let mut list = FileList { entries: Vec::new(), removed: Vec::new(), delta: false };
    loop {
        match next(inbound, "the context file list", wire).await? {
            In::Manifest(m) => {
                list.entries.extend(m.entries);
                list.removed.extend(m.removed);
                list.delta = m.delta;
                if list.entries.len() + list.removed.len() > MAX_ENTRIES {
                    return Err(Status::resource_exhausted(format!("the build context has more than {MAX_ENTRIES} entries; exclude some with .dockerignore")));
                }
                if m.last {
                    return Ok(list);
                }
            }
            _ => return Err(Status::invalid_argument("expected the context file list")),
        }
    }
}

async fn next(inbound: &mut Streaming<BuildClientMessage>, what: &str, wire: &mut Wire) -> Result<In, Status> {
    match inbound.message().await {
        Ok(Some(m)) => {
            wire.bytes += prost::Message::encoded_len(&m) as u64;
            match m.msg {
                Some(m) => Ok(m),
                None => Err(Status::invalid_argument(format!("empty message where {what} was expected"))),
            }
        }
        Ok(None) => Err(Status::cancelled(format!("the client closed the session before sending {what}"))),
        Err(s) => Err(Status::cancelled(format!("the client went away while sending {what}: {}", s.message()))),
    }
}

async fn send(tx: &Tx, msg: Out) -> Result<(), Status> {
    tx.send(Ok(BuildServerMessage { msg: Some(msg) })).await.map_err(|_| Status::cancelled("the client went away"))
}

fn mirror_status(e: MirrorError) -> Status {
    match e {
        MirrorError::Refused { .. } => Status::invalid_argument(e.to_string()),
        MirrorError::Io { .. } => Status::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, MirrorError> + Send + 'static) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(mirror_status),
        Err(e) => Err(Status::internal(format!("context sync crashed: {e}"))),
    }
}

pub(crate) async fn run(shared: &Arc<Shared>, mut inbound: Streaming<BuildClientMessage>, tx: &Tx) -> Result<(), Status> {
    let started = std::time::Instant::now();
    let mut first = Wire::default();
    let request = match next(&mut inbound, "the build request", &mut first).await? {
        In::Request(r) => r,
        _ => return Err(Status::invalid_argument("the first message of a build must be the build request")),
    };
    if request.context_key.is_empty() {
        return Err(Status::invalid_argument("the build request has no context_key"));
    }
    let context_key = request.context_key.clone();
    let manifest_base = request.manifest_base.clone();
    let ssh_ids = request.ssh.clone();
    let mut options = convert::options_from_proto(request).map_err(super::engine_status)?;
    let _span = tracing::info_span!("build", context = %context_key, dockerfile = %options.dockerfile_name).entered();
    tracing::info!(?options, "build requested");
    drop(_span);

    if let Some(e) = options.allow.iter().find(|e| !shared.entitlements.contains(e)) {
        return Err(Status::permission_denied(format!(
            "the build asks for the {e} entitlement (--allow {e}), which this server does not grant: start builder serve with --allow-insecure-entitlement {e}"
        )));
    }

    // Which context paths the build reads: the client lists only those.
    let selection = select_context(shared, &options, tx).await?;
    tracing::debug!(?selection, "context selection");
    send(tx, Out::Selection(selection.to_proto())).await?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "context selection sent");
    // The base images were just resolved (pulled, with --pull); the build uses those.
    options.pull = false;

    // The file list (or what changed since the one the server keeps), then the mirror's plan.
    let lock = shared.mirror_lock(&context_key);
    let _mirror_guard = lock.lock().await;
    let mut wire = first;
    let root = shared.state_root.clone();
    let key = context_key.clone();
    let mirror = Arc::new(blocking(move || Mirror::open(&root, &key)).await?);
    let mut list = read_manifest(&mut inbound, &mut wire).await?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, entries = list.entries.len(), delta = list.delta, "file list received");
    let mut base = None;
    if list.delta {
        let m = mirror.clone();
        let base_gen = manifest_base.clone();
        base = blocking(move || Ok(m.stored_manifest(&base_gen))).await?;
        if base.is_none() {
            send(tx, Out::Need(proto::NeedFiles { full_manifest: true, paths: Vec::new() })).await?;
            list = read_manifest(&mut inbound, &mut wire).await?;
            if list.delta {
                return Err(Status::invalid_argument("asked for the whole file list, got a delta again"));
            }
        }
    }
    // Nothing changed since the stored list: the mirror is already right.
    let unchanged = base.is_some() && list.entries.is_empty() && list.removed.is_empty();
    let (plan, entries, changed_dirs) = {
        let m = mirror.clone();
        blocking(move || match base {
            Some(base) if unchanged => Ok((Plan::default(), base, Vec::new())),
            Some(base) => {
                m.forget_manifest()?;
                let changed_dirs: Vec<FileEntry> = list.entries.iter().filter(|e| crate::context::kind(e) == proto::FileKind::Dir).cloned().collect();
                let (plan, merged) = m.plan_delta(base, list.entries, &list.removed)?;
                Ok((plan, merged, changed_dirs))
            }
            None => {
                m.forget_manifest()?;
                let plan = m.plan(&list.entries)?;
                let dirs = list.entries.iter().filter(|e| crate::context::kind(e) == proto::FileKind::Dir).cloned().collect();
                Ok((plan, list.entries, dirs))
            }
        })
        .await?
    };
    let needed: Vec<&FileEntry> = plan.needed.iter().map(|&i| &entries[i as usize]).collect();
    send(tx, Out::Need(proto::NeedFiles { full_manifest: false, paths: needed.iter().map(|e| e.path.clone()).collect() })).await?;

    // The bytes of the files it lacks, in the order asked.
    let mut bytes_received = 0u64;
    let mut pending: VecDeque<proto::FileChunk> = VecDeque::new();
    for (index, entry) in needed.iter().enumerate() {
        let index = index as u32;
        let mut file = tokio::task::block_in_place(|| mirror.receive(entry)).map_err(mirror_status)?;
        loop {
            let Some(chunk) = pending.pop_front() else {
                match next(&mut inbound, "file contents", &mut wire).await? {
                    In::Data(d) => pending.extend(d.chunks),
                    _ => return Err(Status::invalid_argument("expected file contents")),
                }
                continue;
            };
            if chunk.index != index {
                return Err(Status::invalid_argument(format!("got bytes of file #{} while #{index} ({}) was expected", chunk.index, entry.path)));
            }
            let len = chunk.data.len() as u64;
            bytes_received += len;
            shared.bytes_received.fetch_add(len, Ordering::Relaxed);
            if file.written() + len > entry.size {
                return Err(Status::invalid_argument(format!("{}: more bytes than the {} listed", entry.path, entry.size)));
            }
            if !chunk.data.is_empty() {
                tokio::task::block_in_place(|| file.write(&chunk.data)).map_err(mirror_status)?;
            }
            if chunk.eof {
                break;
            }
        }
        if file.written() != entry.size {
            return Err(Status::invalid_argument(format!("{}: got {} bytes, {} were listed (did it change during the transfer?)", entry.path, file.written(), entry.size)));
        }
        let as_root = mirror.as_root();
        tokio::task::block_in_place(|| file.commit(entry, as_root)).map_err(mirror_status)?;
    }
    if !pending.is_empty() {
        return Err(Status::invalid_argument("more file contents than the server asked for"));
    }
    let files_total = entries.len() as u64;
    let generation = if unchanged {
        manifest_base.clone()
    } else {
        let m = mirror.clone();
        let links = plan.links.clone();
        blocking(move || {
            m.link(&entries, &links)?;
            m.finish(&changed_dirs)?;
            m.store_manifest(&entries)
        })
        .await?
    };
    let synced = proto::ContextSynced {
        files_total,
        files_received: plan.needed.len() as u64,
        bytes_received,
        files_removed: plan.removed,
        generation,
        wire_bytes_received: wire.bytes,
    };
    tracing::info!(files = synced.files_total, received = synced.files_received, bytes = bytes_received, elapsed_ms = started.elapsed().as_millis() as u64, "context synced");
    send(tx, Out::Synced(synced.clone())).await?;

    // The Dockerfile, in a private directory beside the mirror.
    let df_dir = tokio::task::block_in_place(|| tempfile::Builder::new().prefix("dockerfile-").tempdir_in(mirror.dir()))
        .map_err(|e| Status::internal(format!("create a directory for the Dockerfile: {e}")))?;
    let df_name = std::path::Path::new(&options.dockerfile_name).file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "Dockerfile".into());
    let dockerfile_path = df_dir.path().join(df_name);
    tokio::task::block_in_place(|| std::fs::write(&dockerfile_path, &options.dockerfile)).map_err(|e| Status::internal(format!("write {}: {e}", dockerfile_path.display())))?;

    // File outputs are written into a private directory, then streamed back.
    let out_dir = tokio::task::block_in_place(|| tempfile::Builder::new().prefix("outputs-").tempdir_in(mirror.dir()))
        .map_err(|e| Status::internal(format!("create a directory for the build's outputs: {e}")))?;
    let client_outputs = options.outputs.clone();
    let (specs, file_outputs) = crate::output::server_spec(&options.outputs, &options.tags, out_dir.path());
    options.outputs = specs;

    // The build itself, on a blocking thread; progress flows back as it happens.
    let cancel = Arc::new(solver::Cancel::default());
    let (ptx, mut prx) = mpsc::unbounded_channel::<solver::Event>();
    let progress: solver::ProgressSink = Arc::new(move |e| {
        let _ = ptx.send(e);
    });
    // The client's ssh agents, forwarded over this session.
    let mut agents = if ssh_ids.is_empty() {
        None
    } else {
        let a = ServerAgents::start(&ssh_ids).map_err(|e| Status::internal(format!("create sockets for the forwarded ssh agents: {e}")))?;
        options.ssh = a.sockets().iter().map(|(id, p)| (id.clone(), solver::ssh::SshSource::Agent(p.clone()))).collect();
        Some(a)
    };
    let job = BuildJob { options, context_dir: mirror.files_dir().to_path_buf(), dockerfile_path, progress, cancel: cancel.clone() };
    let engine = shared.engine.clone();
    let mut work = std::pin::pin!(crate::server::on_thread(move || engine.build(job)));
    let mut stop = shared.stop.clone();
    let mut cancelled: Option<&'static str> = None;
    let mut inbound_open = true;
    let outcome = loop {
        tokio::select! {
            r = work.as_mut() => break r,
            Some(ev) = prx.recv() => {
                let ev = crate::output::client_paths_in(ev, &file_outputs, &client_outputs);
                if send(tx, Out::Progress(convert::event_to_proto(&ev))).await.is_err() && cancelled.is_none() {
                    cancelled = Some("the client went away");
                    cancel.cancel();
                }
            }
            // The client keeps its side open until the result; an end or error means it is gone.
            Some((id, stream)) = async { match agents.as_mut() { Some(a) => a.next_connection().await, None => std::future::pending().await } } => {
                if let Some(a) = agents.as_mut() {
                    a.relay(id, stream, tx).await;
                }
            }
            m = inbound.message(), if inbound_open => {
                if let Ok(Some(BuildClientMessage { msg: Some(In::Ssh(d)) })) = m {
                    if let Some(a) = agents.as_mut() {
                        a.from_client(d);
                    }
                    continue;
                }
                if !matches!(m, Ok(Some(_))) {
                    inbound_open = false;
                    if cancelled.is_none() {
                        cancelled = Some("the client went away");
                        tracing::warn!("client disconnected: cancelling its build");
                        cancel.cancel();
                    }
                }
            }
            _ = tx.closed(), if cancelled.is_none() => {
                cancelled = Some("the client went away");
                tracing::warn!("client disconnected: cancelling its build");
                cancel.cancel();
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; }, if cancelled.is_none() => {
                cancelled = Some("the server is shutting down");
                cancel.cancel();
            }
        }
    };
    while let Ok(ev) = prx.try_recv() {
        let ev = crate::output::client_paths_in(ev, &file_outputs, &client_outputs);
        let _ = send(tx, Out::Progress(convert::event_to_proto(&ev))).await;
    }
    drop(df_dir);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "build done");
    let outcome = match outcome {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            if let Some(why) = cancelled {
                return Err(Status::cancelled(format!("build cancelled: {why}")));
            }
            return Err(engine_status(e));
        }
        Err(e) => return Err(e),
    };
    for out in file_outputs {
        let tx = tx.clone();
        let sent = tokio::task::spawn_blocking(move || crate::output::send(&out, |p| tx.blocking_send(Ok(BuildServerMessage { msg: Some(Out::Output(p)) })).is_ok())).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(EngineError::Cancelled)) => return Err(Status::cancelled("the client went away while the outputs were sent")),
            Ok(Err(e)) => return Err(engine_status(e)),
            Err(e) => return Err(Status::internal(format!("sending the outputs crashed: {e}"))),
        }
    }
    drop(out_dir);
    let mut result = convert::outcome_to_proto(outcome);
    result.metadata.insert("context.files".into(), synced.files_total.to_string());
    result.metadata.insert("context.files_received".into(), synced.files_received.to_string());
    result.metadata.insert("context.bytes_received".into(), synced.bytes_received.to_string());
    result.metadata.insert("context.files_removed".into(), synced.files_removed.to_string());
    result.metadata.insert("context.wire_bytes_received".into(), synced.wire_bytes_received.to_string());
    send(tx, Out::Result(result)).await
}

/// Asks the engine which context paths the build reads (resolving base images, perhaps pulling
/// them: their progress goes to the client).
async fn select_context(shared: &Arc<Shared>, options: &BuildOptions, tx: &Tx) -> Result<Selection, Status> {
    let (ptx, mut prx) = mpsc::unbounded_channel::<solver::Event>();
    let progress: solver::ProgressSink = Arc::new(move |e| {
        let _ = ptx.send(e);
    });
    let engine = shared.engine.clone();
    let opts = options.clone();
    let mut work = std::pin::pin!(crate::server::on_thread(move || engine.context_selection(&opts, progress)));
    let result = loop {
        tokio::select! {
            r = work.as_mut() => break r,
            Some(ev) = prx.recv() => send(tx, Out::Progress(convert::event_to_proto(&ev))).await?,
        }
    };
    while let Ok(ev) = prx.try_recv() {
        send(tx, Out::Progress(convert::event_to_proto(&ev))).await?;
    }
    result?.map_err(engine_status)
}
