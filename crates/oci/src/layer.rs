//! Writing a gzip layer into the store in one streaming pass, compressing on all cores.
//!
//! The tar stream is cut into 1 MiB chunks; each chunk is deflated on a worker thread (primed
//! with the previous chunk's last 32 KiB as dictionary, as pigz does) and ends on a byte
//! boundary with a sync flush, so the chunks concatenate into ONE gzip member with one CRC
//! (CRCs of chunks combine). Any gzip reader, including ones that stop after the first member,
//! reads the result. The uncompressed sha256 (the layer's diffID) is computed on the way in.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crc32fast::Hasher as Crc;
use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{BlobInfo, BlobWriter};

const CHUNK: usize = 1024 * 1024;
const DICT: usize = 32 * 1024;
/// Default gzip level: zlib's default, as `docker push` and BuildKit use.
pub const DEFAULT_LEVEL: u32 = 6;

/// The gzip level to use for new layers: `$BUILDER_GZIP_LEVEL` (0-9) if set, else [`DEFAULT_LEVEL`].
/// Level 1 is several times faster on incompressible data, for somewhat larger layers.
pub fn level() -> u32 {
    std::env::var("BUILDER_GZIP_LEVEL").ok().and_then(|v| v.parse::<u32>().ok()).filter(|l| *l <= 9).unwrap_or(DEFAULT_LEVEL)
}

/// A finished layer: its compressed blob in the store and its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub blob: BlobInfo,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

/// What a worker sends back: a deflated chunk and the CRC of its input.
type ChunkResult = io::Result<(Vec<u8>, Crc, u64)>;

struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    reply: SyncSender<ChunkResult>,
}

/// A `Write` that gzips what it is given, in parallel, into another `Write`.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    level: u32,
    buf: Vec<u8>,
    prev_tail: Vec<u8>,
    pending: VecDeque<Receiver<ChunkResult>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    max_pending: usize,
    crc: Crc,
    /// Uncompressed bytes so far (the gzip trailer keeps it mod 2^32).
    total_in: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// Compresses into `out` at gzip `level` (0-9) with one thread per core.
    pub fn new(out: W, level: u32) -> ParallelGzip<W> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 32);
        let (tx, rx) = mpsc::sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = deflate_chunk(level, &job.data, &job.dict, job.last);
                        let _ = job.reply.send(result);
                    }
                })
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            level,
            buf: Vec::with_capacity(CHUNK),
            prev_tail: Vec::new(),
            pending: VecDeque::new(),
            jobs: Some(tx),
            workers,
            max_pending: threads * 2 + 1,
            crc: Crc::new(),
            total_in: 0,
            header_written: false,
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out.as_mut().ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(if last { 0 } else { CHUNK }));
        let dict = std::mem::take(&mut self.prev_tail);
        self.prev_tail = data[data.len().saturating_sub(DICT)..].to_vec();
        let (reply, rx) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("gzip workers stopped"))?;
        jobs.send(Job { data, dict, last, reply }).map_err(|_| io::Error::other("gzip worker died"))?;
        self.pending.push_back(rx);
        while self.pending.len() >= self.max_pending {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let (bytes, crc, chunk_len) = rx.recv().map_err(|_| io::Error::other("gzip worker died"))??;
        if !self.header_written {
            self.header_written = true;
            let xfl = if self.level >= 9 {
                2
            } else if self.level <= 1 {
                4
            } else {
                0
            };
            // magic, deflate, no flags, mtime 0, xfl, OS = unix
            self.out()?.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        }
        self.crc.combine(&crc);
        self.total_in += chunk_len;
        self.out()?.write_all(&bytes)
    }

    /// Compresses what is buffered, writes the trailer, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let (sum, amount) = (self.crc.clone().finalize(), self.total_in as u32);
        let out = self.out()?;
        out.write_all(&sum.to_le_bytes())?;
        out.write_all(&amount.to_le_bytes())?;
        self.out.take().ok_or_else(|| io::Error::other("gzip stream already finished"))
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Raw-deflates one chunk into a byte-aligned piece of one deflate stream. Pieces of the chunk
/// that look incompressible (random or already compressed: byte entropy above 7.5 bits) are
/// written as stored blocks instead of being run through the compressor, which is what makes
/// compressing such data cost no more than copying it. The last chunk ends with an empty final
/// block.
fn deflate_chunk(level: u32, data: &[u8], dict: &[u8], last: bool) -> ChunkResult {
    let mut crc = Crc::new();
    crc.update(data);
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let segments: Vec<&[u8]> = data.chunks(STORED_MAX).collect();
    let mut i = 0;
    while i < segments.len() {
        let start = i;
        let stored = level == 0 || looks_incompressible(segments[i]);
        while i < segments.len() && (level == 0 || looks_incompressible(segments[i])) == stored {
            i += 1;
        }
        let offset = start * STORED_MAX;
        let end = (i * STORED_MAX).min(data.len());
        if stored {
            for seg in &segments[start..i] {
                // BFINAL=0, BTYPE=00 (stored), already byte aligned; then LEN and NLEN.
                let len = seg.len() as u16;
                out.push(0);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&(!len).to_le_bytes());
                out.extend_from_slice(seg);
            }
        } else {
            // The 32 KiB before this run, from this chunk or the previous one, primes the window.
            let window: Vec<u8> = if offset >= DICT {
                data[offset - DICT..offset].to_vec()
            } else {
                let mut w = dict[dict.len().saturating_sub(DICT - offset)..].to_vec();
                w.extend_from_slice(&data[..offset]);
                w
            };
            compress_run(level, &data[offset..end], &window, &mut out)?;
        }
    }
    if last {
        // An empty stored block with BFINAL=1 ends the deflate stream.
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    Ok((out, crc, data.len() as u64))
}

/// Largest stored block deflate allows.
const STORED_MAX: usize = 65535;

/// Deflates `data` and ends with a sync flush, so the output is byte aligned and not final.
fn compress_run(level: u32, data: &[u8], window: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut c = Compress::new(Compression::new(level), false);
    if !window.is_empty() {
        c.set_dictionary(window).map_err(io::Error::other)?;
    }
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&data[consumed..], out, FlushCompress::Sync).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        // A sync flush is complete once all input is in and zlib left output room unused.
        if status == Status::StreamEnd || (all_in && out.len() < out.capacity()) {
            return Ok(());
        }
    }
}

/// Whether a piece of data is random-looking, from the byte entropy of a sample of it.
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in data.iter().step_by(4) {
        counts[*b as usize] += 1;
        n += 1;
    }
    let n = f64::from(n);
    let entropy: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.5
}

/// Streams a layer tar into the store as gzip: write the tar to it, then `finish`.
pub struct GzipLayerWriter {
    gz: ParallelGzip<BlobWriter>,
    hasher: Sha256,
    size: u64,
}

impl GzipLayerWriter {
    /// Compresses into `blob` (from [`crate::Store::blob_writer`]) at `level`.
    pub fn new(blob: BlobWriter, level: u32) -> GzipLayerWriter {
        GzipLayerWriter { gz: ParallelGzip::new(blob, level), hasher: Sha256::new(), size: 0 }
    }

    /// Ends the gzip stream and commits the blob.
    pub fn finish(self) -> Result<Layer> {
        let diff_id = Digest::from_hasher(self.hasher);
        let blob = self.gz.finish().map_err(|e| Error::Io { op: "compress layer", path: "<layer>".into(), source: e })?;
        let blob = blob.commit(None)?;
        Ok(Layer { blob, diff_id, uncompressed_size: self.size })
    }
}

impl Write for GzipLayerWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.gz.write(data)?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], level: u32) {
        let mut gz = ParallelGzip::new(Vec::new(), level);
        // Odd write sizes, to cross chunk boundaries mid-write.
        for piece in data.chunks(77_777) {
            gz.write_all(piece).expect("write");
        }
        let compressed = gz.finish().expect("finish");
        // GzDecoder reads only the first member: a single-member stream is required.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut back).expect("valid gzip");
        assert_eq!(back.len(), data.len());
        assert!(back == data, "round trip differs");
    }

    #[test]
    fn parallel_gzip_is_one_valid_gzip_member() {
        let mut data = Vec::new();
        let mut x: u32 = 1;
        for i in 0..(3 * CHUNK + 12345) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push(if i % 3 == 0 { (x >> 16) as u8 } else { b'a' + (i % 7) as u8 });
        }
        roundtrip(&data, 6);
        roundtrip(&data, 1);
        roundtrip(&data, 0);
        // Random-looking pieces (stored as is) mixed with compressible ones, across chunks.
        let mut mixed = Vec::new();
        for i in 0..(2 * CHUNK + 70_001) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            mixed.push(if (i / 100_000) % 2 == 0 { (x >> 16) as u8 } else { 0 });
        }
        roundtrip(&mixed, 6);
        roundtrip(b"", 6);
        roundtrip(&vec![0u8; CHUNK], 6);
    }
}
