//! Merge ops (`COPY --link`): the layers of every input stacked, nothing copied. The key is the
//! op and its inputs' keys (see [`super::cache_key`]).

use std::sync::Arc;

use crate::cache::{CacheKey, CacheRecord, Snapshot, now_secs};
use crate::error::Result;
use crate::provenance::Provenance;

use super::{Output, Solved, StepCtx, snapshot_of};

pub(crate) fn execute(ctx: &StepCtx<'_>, key: CacheKey, prov: &Provenance, inputs: &[Solved]) -> Result<Solved> {
    let mut layers = Vec::new();
    for i in 0..inputs.len() {
        layers.extend(snapshot_of(ctx.step, inputs, i)?.layers.iter().cloned());
    }
    let base = snapshot_of(ctx.step, inputs, 0)?;
    let new = layers.len() - base.layers.len();
    let snapshot = Snapshot { layers };
    let created = now_secs();
    ctx.index.put(&key, &CacheRecord { snapshot: snapshot.clone(), new_layers: new, size: 0, description: ctx.step.into(), created, provenance: Some(prov.clone()) })?;
    ctx.index.remember_step(&key, prov);
    Ok(Solved { key, output: Output::Snapshot { snapshot, new_layers: new, created }, provenance: Some(Arc::new(prov.clone())) })
}
