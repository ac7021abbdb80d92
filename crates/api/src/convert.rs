//! Conversions between the protobuf messages and the engine's and solver's own types, so both
//! ends of the wire work with the types a local build uses.

use std::time::Duration;

use graph::VertexDigest;
use solver::Event;

use crate::engine::{BuildFlags, BuildOptions, BuildOutcome, EngineError, DiskUsage, DiskUsageEntry, ImageSummary, PruneOutcome};
use crate::proto;
use crate::proto::progress_event::Event as P;

pub fn event_to_proto(e: &Event) -> proto::ProgressEvent {
    let event = match e {
        Event::Started { vertex, description } => P::Started(proto::VertexStarted { vertex: vertex.to_string(), description: description.clone() }),
        Event::Cached { vertex } => P::Cached(proto::VertexCached { vertex: vertex.to_string() }),
        Event::Log { vertex, bytes } => P::Log(proto::VertexLog { vertex: vertex.to_string(), data: bytes.clone().into() }),
        Event::Done { vertex, elapsed } => P::Done(proto::VertexDone { vertex: vertex.to_string(), elapsed_micros: micros(*elapsed) }),
        Event::Failed { vertex, error, elapsed } => P::Failed(proto::VertexFailed { vertex: vertex.to_string(), error: error.clone(), elapsed_micros: micros(*elapsed) }),
        Event::Note { message } => P::Note(proto::Note { message: message.clone() }),
        Event::CacheMiss { vertex, reason, earlier } => {
            P::CacheMiss(proto::VertexCacheMiss { vertex: vertex.to_string(), reason: reason.clone(), earlier: earlier.map(|e| e.to_string()).unwrap_or_default() })
        }
    };
    proto::ProgressEvent { event: Some(event) }
}

/// The solver event a progress message carries; `None` for a message this client cannot read.
pub fn event_from_proto(p: proto::ProgressEvent) -> Option<Event> {
    let v = |s: String| VertexDigest::try_from(s).ok();
    Some(match p.event? {
        P::Started(s) => Event::Started { vertex: v(s.vertex)?, description: s.description },
        P::Cached(s) => Event::Cached { vertex: v(s.vertex)? },
        P::Log(s) => Event::Log { vertex: v(s.vertex)?, bytes: s.data.to_vec() },
        P::Done(s) => Event::Done { vertex: v(s.vertex)?, elapsed: Duration::from_micros(s.elapsed_micros) },
        P::Failed(s) => Event::Failed { vertex: v(s.vertex)?, error: s.error, elapsed: Duration::from_micros(s.elapsed_micros) },
        P::Note(n) => Event::Note { message: n.message },
        P::CacheMiss(m) => Event::CacheMiss { vertex: v(m.vertex)?, reason: m.reason, earlier: v(m.earlier) },
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub fn options_to_proto(o: &BuildOptions, context_key: String) -> proto::BuildRequest {
    proto::BuildRequest {
        context_key,
        dockerfile: o.dockerfile.clone().into(),
        dockerfile_name: o.dockerfile_name.clone(),
        build_args: o.build_args.clone().into_iter().collect(),
        target: o.target.clone().unwrap_or_default(),
        tags: o.tags.clone(),
        outputs: o.outputs.clone(),
        secrets: o.secrets.iter().map(|(id, v)| proto::Secret { id: id.clone(), value: v.clone().into() }).collect(),
        no_cache: o.no_cache,
        platform: o.platform.clone().unwrap_or_default(),
        labels: o.labels.clone().into_iter().collect(),
        pull: o.pull,
        max_parallelism: u32::try_from(o.max_parallelism).unwrap_or(u32::MAX),
        options: o.options.to_map().into_iter().collect(),
        manifest_base: String::new(),
        allow: o.allow.clone(),
        ssh: { let mut ids: Vec<String> = o.ssh.keys().cloned().collect(); ids.sort(); ids },
    }
}

/// The options of a request; an `options` entry this engine cannot read is an error.
pub fn options_from_proto(r: proto::BuildRequest) -> Result<BuildOptions, EngineError> {
    let some = |s: String| if s.is_empty() { None } else { Some(s) };
    let options = BuildFlags::from_map(&r.options.into_iter().collect())?;
    Ok(BuildOptions {
        dockerfile: r.dockerfile.to_vec(),
        dockerfile_name: if r.dockerfile_name.is_empty() { "Dockerfile".into() } else { r.dockerfile_name },
        build_args: r.build_args.into_iter().collect(),
        target: some(r.target),
        tags: r.tags,
        outputs: r.outputs,
        secrets: r.secrets.into_iter().map(|s| (s.id, s.value.to_vec())).collect(),
        no_cache: r.no_cache,
        platform: some(r.platform),
        labels: r.labels.into_iter().collect(),
        pull: r.pull,
        max_parallelism: r.max_parallelism as usize,
        // The client's ssh agents are forwarded by the session (`BuildRequest.ssh` names them);
        // the entitlements asked for are checked against the server's own grants.
        ssh: Default::default(),
        allow: r.allow,
        options,
    })
}

pub fn outcome_to_proto(o: BuildOutcome) -> proto::BuildResult {
    proto::BuildResult { image_digest: o.image_digest, tags: o.tags, metadata: o.metadata.into_iter().collect() }
}

pub fn outcome_from_proto(r: proto::BuildResult) -> BuildOutcome {
    BuildOutcome { image_digest: r.image_digest, tags: r.tags, metadata: r.metadata.into_iter().collect() }
}

pub fn image_to_proto(i: ImageSummary) -> proto::ImageSummary {
    proto::ImageSummary { reference: i.reference, id: i.id, manifest_digest: i.manifest_digest, size: i.size, created_unix: i.created_unix }
}

pub fn image_from_proto(i: proto::ImageSummary) -> ImageSummary {
    ImageSummary { reference: i.reference, id: i.id, manifest_digest: i.manifest_digest, size: i.size, created_unix: i.created_unix }
}

pub fn prune_to_proto(p: PruneOutcome) -> proto::PruneResponse {
    proto::PruneResponse { records_removed: p.records_removed, bytes_freed: p.bytes_freed, details: p.details.into_iter().collect() }
}

pub fn prune_from_proto(p: proto::PruneResponse) -> PruneOutcome {
    PruneOutcome { records_removed: p.records_removed, bytes_freed: p.bytes_freed, details: p.details.into_iter().collect() }
}

pub fn usage_to_proto(u: DiskUsage) -> proto::DiskUsageResponse {
    proto::DiskUsageResponse {
        entries: u
            .entries
            .into_iter()
            .map(|e| proto::DiskUsageEntry { kind: e.kind, id: e.id, size: e.size, description: e.description, last_used_unix: e.last_used_unix })
            .collect(),
        total: u.total,
        reclaimable: u.reclaimable,
        layer_bytes: u.layer_bytes,
        mount_bytes: u.mount_bytes,
    }
}

pub fn usage_from_proto(u: proto::DiskUsageResponse) -> DiskUsage {
    DiskUsage {
        entries: u
            .entries
            .into_iter()
            .map(|e| DiskUsageEntry { kind: e.kind, id: e.id, size: e.size, description: e.description, last_used_unix: e.last_used_unix })
            .collect(),
        total: u.total,
        reclaimable: u.reclaimable,
        layer_bytes: u.layer_bytes,
        mount_bytes: u.mount_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_progress_event_survives_the_wire() {
        let v = VertexDigest([7; 32]);
        let events = vec![
            Event::Started { vertex: v, description: "[2/3] RUN make".into() },
            Event::Cached { vertex: v },
            Event::Log { vertex: v, bytes: b"hello\n".to_vec() },
            Event::Done { vertex: v, elapsed: Duration::from_millis(1500) },
            Event::Failed { vertex: v, error: "exit code 2".into(), elapsed: Duration::from_micros(3) },
            Event::Note { message: "exporting layers".into() },
        ];
        for e in events {
            assert_eq!(event_from_proto(event_to_proto(&e)), Some(e));
        }
    }

    #[test]
    fn build_options_survive_the_wire() {
        let mut o = BuildOptions { dockerfile: b"FROM scratch\n".to_vec(), dockerfile_name: "Dockerfile".into(), tags: vec!["app:1".into()], ..Default::default() };
        o.build_args.insert("A".into(), "1".into());
        o.secrets.insert("tok".into(), b"s3cret".to_vec());
        o.target = Some("final".into());
        o.options = BuildFlags { compression: Some(snapshot::diff::Compression::Zstd), push: true, network_none: true, add_hosts: vec![("db".into(), "10.0.0.2".into()), ("v6".into(), "::1".into())],
            cache_from: vec![remote_cache::CacheFrom::parse("r.example/app:cache").expect("from"), remote_cache::CacheFrom::parse("type=local,src=/c").expect("local")],
            cache_to: vec![remote_cache::CacheTo::parse("type=registry,ref=r.example/app:cache,mode=max,ignore-error=true").expect("to")],
        };
        let back = options_from_proto(options_to_proto(&o, "k".into())).unwrap();
        assert_eq!(back.options, o.options);
        assert_eq!(back.dockerfile, o.dockerfile);
        assert_eq!(back.build_args, o.build_args);
        assert_eq!(back.secrets, o.secrets);
        assert_eq!(back.target, o.target);
        assert_eq!(back.tags, o.tags);
        assert!(!format!("{back:?}").contains("s3cret"), "Debug must not print secret values");
    }

    #[test]
    fn a_build_option_the_engine_cannot_read_is_refused_by_name() {
        let request = |k: &str, v: &str| {
            let mut r = options_to_proto(&BuildOptions::default(), "k".into());
            r.options.insert(k.into(), v.into());
            options_from_proto(r).map(|_| ()).unwrap_err().to_string()
        };
        assert!(request("compression", "lz4").contains("invalid --compression \"lz4\""));
        assert!(request("push", "yes").contains("invalid --push"));
        assert!(request("network", "bridge").contains("invalid --network \"bridge\""));
        assert!(request("add-host", "db 10.0.0.300\n").contains("invalid --add-host \"db 10.0.0.300\""));
        let e = request("squash", "true");
        assert!(e.contains("\"squash\"") && e.contains("newer"), "{e}");
    }
}
