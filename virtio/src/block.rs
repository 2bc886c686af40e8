//! virtio-blk (virtio 1.2, section 5.2) over an image file.
//!
//! One request queue, with event indexes. Requests are `VIRTIO_BLK_T_IN` (`preadv` straight
//! into the driver's buffers), `OUT` (`pwritev`), `FLUSH` (`fdatasync`),
//! `GET_ID` (the serial), and on a writable disk `DISCARD` (a hole punched
//! in the image: `fallocate(PUNCH_HOLE)`, so freed blocks stop taking host
//! space) and `WRITE_ZEROES` (`fallocate(ZERO_RANGE)`, or a punched hole
//! when the driver allows unmapping; zeros written where the host file
//! system has neither). A read-only device offers `VIRTIO_BLK_F_RO`,
//! its file is open read-only, and it answers every write with
//! `VIRTIO_BLK_S_IOERR` without touching the file.
//!
//! A copy-on-write device ([`Block::with_overlay`]) is writable for the
//! driver but never writes its file (opened read-only): blocks written,
//! discarded or zeroed live in memory ([`Overlay`]), reads come from there
//! for those blocks and from the file for the rest, and `FLUSH` is a
//! no-op. A file system that must write to mount (a journal to replay,
//! orphans to clean up) can then be mounted read-only without changing the
//! image.
//!
//! Each request is checked before any I/O: a 16-byte header in the
//! readable buffers, a status byte at the end of the writable ones, data
//! in whole sectors, and a sector range inside the capacity. A request
//! that fails a check gets `IOERR` (or `UNSUPP` for an unknown type); one
//! with no room for a status byte is returned with nothing written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek};
use std::os::fd::AsRawFd;

use crate::spec::{self, blk_config};

use super::memory::{read_bytes, write_bytes, GuestMemory};
use super::mmio::VirtioDevice;
use super::queue::{Descriptor, DescriptorChain, Queue};
use super::QueueError;

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;
/// The queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Data segments per request (`seg_max`): the queue less header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bytes per segment (`size_max`).
pub const SIZE_MAX: u32 = 1 << 20;
/// The length of a `GET_ID` answer.
const ID_BYTES: usize = spec::VIRTIO_BLK_ID_BYTES as usize;
/// The request header: type, ioprio, sector.
const HEADER: usize = spec::VIRTIO_BLK_OUTHDR_SIZE;
/// One range of a `DISCARD`/`WRITE_ZEROES` request: sector (le64),
/// sectors (le32), flags (le32) (virtio 1.2, 5.2.6).
const RANGE: usize = spec::VIRTIO_BLK_DISCARD_WRITE_ZEROES_SIZE;
/// The most sectors one discard or write-zeroes range may cover (2 GiB).
const MAX_RANGE_SECTORS: u32 = 1 << 22;
/// Discards are done in 4 KiB units (the image's usual block size).
const DISCARD_ALIGN_SECTORS: u32 = 8;

/// Request counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// `IN` requests done.
    pub reads: u64,
    /// `OUT` requests done.
    pub writes: u64,
    /// `FLUSH` requests done.
    pub flushes: u64,
    /// `fdatasync`s of the file made for them (a `FLUSH` with nothing written since
    /// the last one needs none).
    pub syncs: u64,
    /// Bytes read from the image.
    pub bytes_read: u64,
    /// Bytes written to the image.
    pub bytes_written: u64,
    /// Requests answered with an error status.
    pub errors: u64,
    /// `DISCARD` requests done.
    pub discards: u64,
    /// `WRITE_ZEROES` requests done.
    pub write_zeroes: u64,
    /// Bytes held in memory by a copy-on-write device's overlay.
    pub overlay_bytes: u64,
    /// Chunks a copy-on-write device's overlay holds (written, discarded
    /// or zeroed): 0 while the device reads exactly as its file.
    pub overlay_chunks: u64,
}

/// Bytes per overlay chunk: the unit a copy-on-write device keeps in
/// memory (the usual file system block size).
pub const CHUNK: u64 = 4096;

/// One chunk of the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Discarded or zeroed: reads as zeros, holds no buffer.
    Zero,
    /// Written: the chunk's whole contents.
    Data(Box<[u8]>),
}

/// The blocks a copy-on-write device has written, in memory, in
/// [`CHUNK`]-byte units keyed by chunk index. A chunk written in part is
/// first filled from the base (the image file), so every chunk present
/// holds its whole contents; a chunk absent reads from the base.
#[derive(Debug, Default)]
pub struct Overlay {
    chunks: BTreeMap<u64, Chunk>,
    bytes: u64,
}

impl Overlay {
    /// An empty overlay.
    pub fn new() -> Overlay {
        Overlay::default()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of buffers held (zeroed chunks hold none).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Chunks held, zeroed ones included.
    pub fn chunks(&self) -> u64 {
        self.chunks.len() as u64
    }

    /// Whether any chunk of `[offset, offset + len)` is in the overlay.
    pub fn covers_any(&self, offset: u64, len: u64) -> bool {
        len > 0
            && self
                .chunks
                .range(offset / CHUNK..=(offset + len - 1) / CHUNK)
                .next()
                .is_some()
    }

    /// Fills `out` with the bytes at `offset`: from the overlay where it
    /// has them, else from `base(offset, buf)` (which must fill `buf`).
    ///
    /// # Errors
    /// Those of `base`.
    pub fn read(
        &self,
        offset: u64,
        out: &mut [u8],
        mut base: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + out.len() as u64;
        let mut at = offset;
        while at < end {
            let idx = at / CHUNK;
            let in_chunk = (at % CHUNK) as usize;
            let buf_at = (at - offset) as usize;
            match self.chunks.get(&idx) {
                Some(c) => {
                    let n = (CHUNK as usize - in_chunk).min((end - at) as usize);
                    let dst = &mut out[buf_at..buf_at + n];
                    match c {
                        Chunk::Zero => dst.fill(0),
                        Chunk::Data(d) => dst.copy_from_slice(&d[in_chunk..in_chunk + n]),
                    }
                    at += n as u64;
                }
                None => {
                    // Up to the next chunk the overlay holds (or the end).
                    let stop = self
                        .chunks
                        .range(idx + 1..)
                        .next()
                        .map_or(end, |(&i, _)| (i * CHUNK).min(end));
                    let n = (stop - at) as usize;
                    base(at, &mut out[buf_at..buf_at + n])?;
                    at = stop;
                }
            }
        }
        Ok(())
    }

    /// Stores `data` at `offset`; a chunk met for the first time and not
    /// covered whole is filled from `base` first.
    ///
    /// # Errors
    /// Those of `base`.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        base: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.store(offset, data.len() as u64, Some(data), base)
    }

    /// Makes `[offset, offset + len)` read as zeros (discard and write
    /// zeroes): whole chunks hold no buffer.
    ///
    /// # Errors
    /// Those of `base`, for the chunks covered in part.
    pub fn zero(
        &mut self,
        offset: u64,
        len: u64,
        base: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.store(offset, len, None, base)
    }

    fn store(
        &mut self,
        offset: u64,
        len: u64,
        data: Option<&[u8]>,
        mut base: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let idx = at / CHUNK;
            let in_chunk = (at % CHUNK) as usize;
            let n = (CHUNK as usize - in_chunk).min((end - at) as usize);
            let whole = n == CHUNK as usize;
            let src = data.map(|d| &d[(at - offset) as usize..(at - offset) as usize + n]);
            match (src, whole) {
                (None, true) => {
                    if let Some(Chunk::Data(_)) = self.chunks.insert(idx, Chunk::Zero) {
                        self.bytes -= CHUNK;
                    }
                }
                _ => {
                    let chunk = match self.chunks.remove(&idx) {
                        Some(Chunk::Data(d)) => d,
                        Some(Chunk::Zero) => {
                            self.bytes += CHUNK;
                            vec![0u8; CHUNK as usize].into_boxed_slice()
                        }
                        None => {
                            let mut d = vec![0u8; CHUNK as usize].into_boxed_slice();
                            if !whole {
                                base(idx * CHUNK, &mut d)?;
                            }
                            self.bytes += CHUNK;
                            d
                        }
                    };
                    let mut chunk = chunk;
                    match src {
                        Some(s) => chunk[in_chunk..in_chunk + n].copy_from_slice(s),
                        None => chunk[in_chunk..in_chunk + n].fill(0),
                    }
                    self.chunks.insert(idx, Chunk::Data(chunk));
                }
            }
            at += n as u64;
        }
        Ok(())
    }
}

/// A virtio-blk device backed by a file.
pub struct Block {
    file: File,
    read_only: bool,
    /// Copy-on-write: written blocks live here, never in the file.
    overlay: Option<Overlay>,
    /// The file may hold data not yet made durable: a write, discard or zeroing
    /// reached it since the last `fdatasync` (true at first: what others wrote before
    /// is not known). A `FLUSH` with nothing new skips the `fdatasync`: a file
    /// system's sync, unmount and read-only remount flush two or three times in a
    /// row, and each `fdatasync` cost 0.2-1.7 ms here even with nothing to write.
    unflushed: bool,
    sectors: u64,
    serial: [u8; ID_BYTES],
    config: Vec<u8>,
    stats: BlockStats,
    /// The request being served: its buffer is reused, so requests are
    /// popped without allocating.
    chain: DescriptorChain,
}

impl Block {
    /// A device over `file` (opened read-only if `read_only`; a regular
    /// file or a block device), of its length rounded down to whole sectors, reporting `serial` (up to 20
    /// bytes) to `GET_ID`.
    ///
    /// # Errors
    /// The file's length cannot be read.
    pub fn new(file: File, read_only: bool, serial: &str) -> io::Result<Block> {
        // Seeking finds the size of block devices too (their metadata
        // length is 0).
        let sectors = (&file).seek(io::SeekFrom::End(0))? / SECTOR_SIZE;
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        let mut config = vec![0u8; blk_config::SIZE];
        let mut put = |at: usize, bytes: &[u8]| config[at..at + bytes.len()].copy_from_slice(bytes);
        put(blk_config::CAPACITY, &sectors.to_le_bytes());
        put(blk_config::SIZE_MAX, &SIZE_MAX.to_le_bytes());
        put(blk_config::SEG_MAX, &SEG_MAX.to_le_bytes());
        put(blk_config::NUM_QUEUES, &1u16.to_le_bytes());
        for (at, v) in [
            (blk_config::MAX_DISCARD_SECTORS, MAX_RANGE_SECTORS),
            (blk_config::MAX_DISCARD_SEG, SEG_MAX),
            (blk_config::DISCARD_SECTOR_ALIGNMENT, DISCARD_ALIGN_SECTORS),
            (blk_config::MAX_WRITE_ZEROES_SECTORS, MAX_RANGE_SECTORS),
            (blk_config::MAX_WRITE_ZEROES_SEG, SEG_MAX),
        ] {
            put(at, &v.to_le_bytes());
        }
        put(blk_config::WRITE_ZEROES_MAY_UNMAP, &[1]);
        Ok(Block {
            file,
            read_only,
            overlay: None,
            unflushed: true,
            sectors,
            serial: id,
            config,
            stats: BlockStats::default(),
            chain: DescriptorChain::default(),
        })
    }

    /// A copy-on-write device over `file` (which may be open read-only):
    /// writable for the driver, but every block written, discarded or
    /// zeroed is kept in memory and the file is never written.
    ///
    /// # Errors
    /// The file's length cannot be read.
    pub fn with_overlay(file: File, serial: &str) -> io::Result<Block> {
        let mut b = Block::new(file, false, serial)?;
        b.overlay = Some(Overlay::new());
        Ok(b)
    }

    /// The capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the device is read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The request counters.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            overlay_bytes: self.overlay.as_ref().map_or(0, Overlay::bytes),
            overlay_chunks: self.overlay.as_ref().map_or(0, Overlay::chunks),
            ..self.stats
        }
    }

    /// Reads `buf.len()` bytes at byte `offset` of the device as the
    /// driver would see them (through the overlay of a copy-on-write
    /// device), for a reader beside the driver: a program reading a file's
    /// blocks where the file system maps them. Not counted in the stats.
    ///
    /// # Errors
    /// `InvalidInput` for a range past the capacity; the file's read
    /// errors.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.sectors * SECTOR_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes at {offset} reach past the disk's end ({} bytes)",
                    buf.len(),
                    self.sectors * SECTOR_SIZE
                ),
            ));
        }
        match &self.overlay {
            Some(o) if o.covers_any(offset, buf.len() as u64) => {
                o.read(offset, buf, |off, b| read_base(&self.file, off, b))
            }
            _ => read_base(&self.file, offset, buf),
        }
    }

    /// Handles one request; returns the bytes written to its buffers.
    fn handle<M: GuestMemory + ?Sized>(&mut self, chain: &DescriptorChain, mem: &M) -> u32 {
        let readable = chain.readable().as_slice();
        let writable = chain.writable().as_slice();
        let in_len: u64 = writable.iter().map(|d| u64::from(d.len)).sum();
        if in_len == 0 {
            // Nowhere to put a status: nothing can be answered.
            self.stats.errors += 1;
            return 0;
        }
        // The status byte is the last writable byte.
        let status_at = Cursor::new(writable).locate(in_len - 1);
        let (status, written) = match self.request(readable, writable, in_len - 1, mem) {
            Ok(written) => (spec::VIRTIO_BLK_S_OK, written),
            Err(status) => {
                self.stats.errors += 1;
                (status, 0)
            }
        };
        let Some(status_at) = status_at else {
            return 0;
        };
        if write_bytes(mem, status_at, &[status as u8]).is_err() {
            return 0;
        }
        (written + 1) as u32
    }

    /// Runs a request; `data_in` is the room for data before the status
    /// byte. Returns the data bytes written, or the status to report.
    fn request<M: GuestMemory + ?Sized>(
        &mut self,
        readable: &[Descriptor],
        writable: &[Descriptor],
        data_in: u64,
        mem: &M,
    ) -> Result<u64, u32> {
        const IOERR: u32 = spec::VIRTIO_BLK_S_IOERR;
        let mut header = [0u8; HEADER];
        Cursor::new(readable)
            .read(mem, 0, &mut header)
            .map_err(|_| IOERR)?;
        let ty = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let out_len: u64 = readable.iter().map(|d| u64::from(d.len)).sum::<u64>() - HEADER as u64;
        match ty {
            spec::VIRTIO_BLK_T_IN => {
                self.check_range(sector, data_in)?;
                let at = sector * SECTOR_SIZE;
                match &self.overlay {
                    Some(o) if o.covers_any(at, data_in) => {
                        let mut buf = vec![0u8; data_in as usize];
                        o.read(at, &mut buf, |off, b| read_base(&self.file, off, b))
                            .map_err(|_| IOERR)?;
                        Cursor::new(writable)
                            .write(mem, 0, &buf)
                            .map_err(|_| IOERR)?;
                    }
                    _ => {
                        let iov = Cursor::new(writable).iovecs(mem, 0, data_in).ok_or(IOERR)?;
                        io_vectored(&self.file, &iov, at, false).map_err(|_| IOERR)?;
                    }
                }
                self.stats.reads += 1;
                self.stats.bytes_read += data_in;
                Ok(data_in)
            }
            spec::VIRTIO_BLK_T_OUT => {
                if self.read_only {
                    return Err(IOERR);
                }
                self.check_range(sector, out_len)?;
                if let Some(o) = &mut self.overlay {
                    let mut buf = vec![0u8; out_len as usize];
                    Cursor::new(readable)
                        .read(mem, HEADER as u64, &mut buf)
                        .map_err(|_| IOERR)?;
                    let file = &self.file;
                    o.write(sector * SECTOR_SIZE, &buf, |off, b| {
                        fill_chunk(file, off, b)
                    })
                    .map_err(|_| IOERR)?;
                } else {
                    let iov = Cursor::new(readable)
                        .iovecs(mem, HEADER as u64, out_len)
                        .ok_or(IOERR)?;
                    self.unflushed = true;
                    io_vectored(&self.file, &iov, sector * SECTOR_SIZE, true).map_err(|_| IOERR)?;
                }
                self.stats.writes += 1;
                self.stats.bytes_written += out_len;
                Ok(0)
            }
            spec::VIRTIO_BLK_T_FLUSH => {
                // A copy-on-write device keeps nothing in the file.
                if !self.read_only && self.overlay.is_none() && self.unflushed {
                    self.file.sync_data().map_err(|_| IOERR)?;
                    self.unflushed = false;
                    self.stats.syncs += 1;
                }
                self.stats.flushes += 1;
                Ok(0)
            }
            spec::VIRTIO_BLK_T_DISCARD | spec::VIRTIO_BLK_T_WRITE_ZEROES => {
                if self.read_only {
                    return Err(spec::VIRTIO_BLK_S_UNSUPP);
                }
                // Whole 16-byte ranges (RANGE is a power of two).
                if out_len == 0 || out_len & (RANGE as u64 - 1) != 0 || out_len > 1 << 20 {
                    return Err(IOERR);
                }
                let mut ranges = vec![0u8; out_len as usize];
                Cursor::new(readable)
                    .read(mem, HEADER as u64, &mut ranges)
                    .map_err(|_| IOERR)?;
                let zeroes = ty == spec::VIRTIO_BLK_T_WRITE_ZEROES;
                for r in ranges.chunks_exact(RANGE) {
                    let sector = u64::from_le_bytes(r[0..8].try_into().expect("8 bytes"));
                    let count = u32::from_le_bytes(r[8..12].try_into().expect("4 bytes"));
                    let flags = u32::from_le_bytes(r[12..16].try_into().expect("4 bytes"));
                    let unmap = flags & spec::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
                    if flags & !spec::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || (unmap && !zeroes)
                    {
                        return Err(spec::VIRTIO_BLK_S_UNSUPP);
                    }
                    if count > MAX_RANGE_SECTORS {
                        return Err(IOERR);
                    }
                    self.check_range(sector, u64::from(count) * SECTOR_SIZE)?;
                    let (at, len) = (sector * SECTOR_SIZE, u64::from(count) * SECTOR_SIZE);
                    self.unflushed |= self.overlay.is_none();
                    let file = &self.file;
                    let r = if let Some(o) = &mut self.overlay {
                        // Both read as zeros afterwards, in memory.
                        o.zero(at, len, |off, b| fill_chunk(file, off, b))
                    } else if zeroes {
                        zero_range(file, at, len, unmap)
                    } else {
                        discard(file, at, len)
                    };
                    r.map_err(|_| IOERR)?;
                }
                if zeroes {
                    self.stats.write_zeroes += 1;
                } else {
                    self.stats.discards += 1;
                }
                Ok(0)
            }
            spec::VIRTIO_BLK_T_GET_ID => {
                let n = data_in.min(ID_BYTES as u64);
                Cursor::new(writable)
                    .write(mem, 0, &self.serial[..n as usize])
                    .map_err(|_| IOERR)?;
                Ok(n)
            }
            _ => Err(spec::VIRTIO_BLK_S_UNSUPP),
        }
    }

    /// Whole sectors, inside the disk.
    fn check_range(&self, sector: u64, len: u64) -> Result<(), u32> {
        let ok = len & (SECTOR_SIZE - 1) == 0
            && sector
                .checked_add(len / SECTOR_SIZE)
                .is_some_and(|end| end <= self.sectors);
        if ok {
            Ok(())
        } else {
            Err(spec::VIRTIO_BLK_S_IOERR)
        }
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        spec::VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let writable = if self.read_only {
            0
        } else {
            1u64 << spec::VIRTIO_BLK_F_DISCARD | 1 << spec::VIRTIO_BLK_F_WRITE_ZEROES
        };
        let mut f = writable
            | 1u64 << spec::VIRTIO_F_VERSION_1
            | 1 << spec::VIRTIO_BLK_F_FLUSH
            | 1 << spec::VIRTIO_BLK_F_SEG_MAX
            | 1 << spec::VIRTIO_BLK_F_SIZE_MAX
            | 1 << spec::VIRTIO_RING_F_EVENT_IDX;
        if self.read_only {
            f |= 1 << spec::VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = (offset as usize).saturating_add(i);
            *b = self.config.get(at).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Nothing writable is offered (no VIRTIO_BLK_F_CONFIG_WCE).
    }

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {}

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        let mut chain = std::mem::take(&mut self.chain);
        let result = self.serve(queue, mem, &mut chain);
        self.chain = chain;
        result
    }
}

impl Block {
    /// Handles every request the driver made available, each popped into
    /// `chain`.
    fn serve(
        &mut self,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        chain: &mut DescriptorChain,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        while queue.pop_into(mem, chain)? {
            let len = self.handle(chain, mem);
            queue.add_used(mem, chain.head, len)?;
            used = true;
        }
        Ok(used)
    }
}

/// A byte range view over a list of buffers, as if they were one.
struct Cursor<'a> {
    descs: &'a [Descriptor],
}

impl<'a> Cursor<'a> {
    fn new(descs: &'a [Descriptor]) -> Self {
        Cursor { descs }
    }

    /// The buffers' pieces covering `[start, start + len)`, as `(addr,
    /// len)`; `None` if the buffers are shorter.
    fn pieces(&self, start: u64, len: u64) -> Option<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let mut skip = start;
        let mut left = len;
        for d in self.descs {
            if left == 0 {
                break;
            }
            let dlen = u64::from(d.len);
            if skip >= dlen {
                skip -= dlen;
                continue;
            }
            let n = (dlen - skip).min(left);
            out.push((d.addr + skip, n));
            skip = 0;
            left -= n;
        }
        (left == 0).then_some(out)
    }

    /// The address of byte `at`.
    fn locate(&self, at: u64) -> Option<u64> {
        self.pieces(at, 1).map(|p| p[0].0)
    }

    fn read<M: GuestMemory + ?Sized>(&self, mem: &M, start: u64, out: &mut [u8]) -> Result<(), ()> {
        let mut done = 0;
        for (addr, n) in self.pieces(start, out.len() as u64).ok_or(())? {
            read_bytes(mem, addr, &mut out[done..done + n as usize]).map_err(drop)?;
            done += n as usize;
        }
        Ok(())
    }

    fn write<M: GuestMemory + ?Sized>(&self, mem: &M, start: u64, data: &[u8]) -> Result<(), ()> {
        let mut done = 0;
        for (addr, n) in self.pieces(start, data.len() as u64).ok_or(())? {
            write_bytes(mem, addr, &data[done..done + n as usize]).map_err(drop)?;
            done += n as usize;
        }
        Ok(())
    }

    /// Host `iovec`s for `[start, start + len)`.
    fn iovecs<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        start: u64,
        len: u64,
    ) -> Option<Vec<libc::iovec>> {
        self.pieces(start, len)?
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(addr, n)| {
                mem.translate(addr, n).map(|p| libc::iovec {
                    iov_base: p.cast(),
                    iov_len: n as usize,
                })
            })
            .collect()
    }
}

/// `fallocate(fd, mode, offset, len)`.
fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    loop {
        // SAFETY: fallocate on a descriptor we own; numbers only.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether an error means "this file (system) cannot do that".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::ENODEV)
    )
}

/// Discards `[offset, offset + len)`: punches a hole (the range then
/// reads as zeros). Where the host cannot punch holes nothing is done: a
/// discard only says the data is no longer needed.
fn discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    match fallocate(
        file,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    ) {
        Err(e) if unsupported(&e) => Ok(()),
        r => r,
    }
}

/// Makes `[offset, offset + len)` read as zeros: a punched hole if
/// `unmap`, else `FALLOC_FL_ZERO_RANGE`; zeros written if the host can do
/// neither.
fn zero_range(file: &File, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
    let mode = if unmap {
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
    } else {
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
    };
    match fallocate(file, mode, offset, len) {
        Err(e) if unsupported(&e) => {}
        r => return r,
    }
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        std::os::unix::fs::FileExt::write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Reads `buf.len()` bytes of the base file at `offset` (for the
/// overlay's reads, which stay inside the capacity).
fn read_base(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills an overlay chunk from the base file: the last chunk of an image
/// whose size is not a multiple of the chunk reaches past the file's end,
/// where it reads as zeros (the device never shows those bytes).
fn fill_chunk(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match std::os::unix::fs::FileExt::read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// `preadv`/`pwritev` of every byte of `iov` at `offset`, resuming after
/// short transfers and `EINTR`; a read past the end of the file is an
/// error.
fn io_vectored(file: &File, iov: &[libc::iovec], offset: u64, write: bool) -> io::Result<()> {
    let mut iov = iov.to_vec();
    let mut first = 0;
    let mut offset = offset;
    while first < iov.len() {
        let batch = &iov[first..iov.len().min(first + 1024)];
        // SAFETY: every iovec points at driver buffers that `translate`
        // vouched for; the driver owns them until the request is returned
        // to the used ring, which happens after this call.
        let n = unsafe {
            if write {
                libc::pwritev(
                    file.as_raw_fd(),
                    batch.as_ptr(),
                    batch.len() as i32,
                    offset as libc::off_t,
                )
            } else {
                libc::preadv(
                    file.as_raw_fd(),
                    batch.as_ptr(),
                    batch.len() as i32,
                    offset as libc::off_t,
                )
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        offset += n as u64;
        let mut n = n as usize;
        while n > 0 {
            let v = &mut iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: advancing within the same buffer, `n < iov_len`.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                n = 0;
            }
        }
        while first < iov.len() && iov[first].iov_len == 0 {
            first += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::memory::{read_le, write_le};
    use super::super::queue::tests::MockDriver;
    use super::*;
    use std::io::{Read, Seek, Write};

    const T_IN: u32 = spec::VIRTIO_BLK_T_IN;
    const T_OUT: u32 = spec::VIRTIO_BLK_T_OUT;

    fn image(sectors: u64) -> File {
        let mut f = tempfile();
        let data: Vec<u8> = (0..sectors * SECTOR_SIZE)
            .map(|i| (i / 512) as u8 ^ i as u8)
            .collect();
        f.write_all(&data).unwrap();
        f
    }

    fn tempfile() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "lkl-blk-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    /// Submits a request like Linux does: header, data buffers, status.
    /// Returns (used len, status, data address).
    fn submit(
        dev: &mut Block,
        d: &mut MockDriver,
        q: &mut Queue,
        ty: u32,
        sector: u64,
        data: &[u32],
        data_writable: bool,
    ) -> (u32, u8, Vec<u64>) {
        let hdr = d.alloc(16);
        write_le(&*d.mem, hdr, ty).unwrap();
        write_le(&*d.mem, hdr + 4, 0u32).unwrap();
        write_le(&*d.mem, hdr + 8, sector).unwrap();
        let mut bufs = vec![(hdr, 16, false)];
        let mut addrs = Vec::new();
        for &len in data {
            let a = d.alloc(len);
            addrs.push(a);
            bufs.push((a, len, data_writable));
        }
        let status = d.alloc(1);
        write_le(&*d.mem, status, 0xffu16).unwrap();
        bufs.push((status, 1, true));
        let n = d.used_idx();
        d.add_chain(&bufs);
        assert!(dev.process_queue(0, q, &*d.mem).unwrap());
        assert_eq!(d.used_idx(), n.wrapping_add(1));
        let (_, len) = d.used_elem(n);
        let st: u16 = read_le(&*d.mem, status).unwrap();
        (len, st as u8, addrs)
    }

    /// Submits a FLUSH; returns the status.
    fn flush(dev: &mut Block, d: &mut MockDriver, q: &mut Queue) -> u8 {
        submit(dev, d, q, spec::VIRTIO_BLK_T_FLUSH, 0, &[], true).1
    }

    /// The whole file.
    fn contents(file: &mut File) -> Vec<u8> {
        let mut v = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut v).unwrap();
        v
    }

    /// Submits an OUT request writing `data` at `sector`; returns (used
    /// len, status).
    fn submit_out(
        dev: &mut Block,
        d: &mut MockDriver,
        q: &mut Queue,
        sector: u64,
        data: &[u8],
    ) -> (u32, u8) {
        let hdr = d.alloc(16);
        write_le(&*d.mem, hdr, T_OUT).unwrap();
        write_le(&*d.mem, hdr + 8, sector).unwrap();
        let buf = d.alloc(data.len() as u32);
        write_bytes(&*d.mem, buf, data).unwrap();
        let status = d.alloc(1);
        let n = d.used_idx();
        d.add_chain(&[
            (hdr, 16, false),
            (buf, data.len() as u32, false),
            (status, 1, true),
        ]);
        dev.process_queue(0, q, &*d.mem).unwrap();
        let st: u16 = read_le(&*d.mem, status).unwrap();
        (d.used_elem(n).1, st as u8)
    }

    fn bytes(d: &MockDriver, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        read_bytes(&*d.mem, addr, &mut v).unwrap();
        v
    }

    #[test]
    fn config_and_features() {
        let dev = Block::new(image(9), true, "serial-1").unwrap();
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 9);
        let mut seg = [0u8; 4];
        dev.read_config(12, &mut seg);
        assert_eq!(u32::from_le_bytes(seg), SEG_MAX);
        assert_ne!(dev.features() & 1 << spec::VIRTIO_BLK_F_RO, 0);
        let mut past = [1u8; 4];
        dev.read_config(0x1000, &mut past);
        assert_eq!(past, [0; 4]);
        let rw = Block::new(image(1), false, "").unwrap();
        assert_eq!(rw.features() & 1 << spec::VIRTIO_BLK_F_RO, 0);
    }

    #[test]
    fn reads_writes_flush_and_id() {
        let file = image(64);
        let mut dev = Block::new(file.try_clone().unwrap(), false, "lkl-disk-7").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        // Read sectors 3..6 into two buffers of 512 and 1024 bytes.
        let (len, st, a) = submit(&mut dev, &mut d, &mut q, T_IN, 3, &[512, 1024], true);
        assert_eq!((len, st), (1537, 0));
        let mut want = vec![0u8; 1536];
        let mut f = file.try_clone().unwrap();
        f.seek(io::SeekFrom::Start(3 * 512)).unwrap();
        f.read_exact(&mut want).unwrap();
        assert_eq!(bytes(&d, a[0], 512), want[..512]);
        assert_eq!(bytes(&d, a[1], 1024), want[512..]);
        // Write sector 10 from a buffer of 0x5a.
        assert_eq!(
            submit_out(&mut dev, &mut d, &mut q, 10, &[0x5a; 512]),
            (1, 0)
        );
        let mut got = [0u8; 512];
        f.seek(io::SeekFrom::Start(10 * 512)).unwrap();
        f.read_exact(&mut got).unwrap();
        assert_eq!(got, [0x5a; 512]);
        // Flush.
        let (len, st, _) = submit(
            &mut dev,
            &mut d,
            &mut q,
            spec::VIRTIO_BLK_T_FLUSH,
            0,
            &[],
            true,
        );
        assert_eq!((len, st), (1, 0));
        // GET_ID.
        let (len, st, a) = submit(
            &mut dev,
            &mut d,
            &mut q,
            spec::VIRTIO_BLK_T_GET_ID,
            0,
            &[20],
            true,
        );
        assert_eq!((len, st), (21, 0));
        assert_eq!(&bytes(&d, a[0], 20)[..11], b"lkl-disk-7\0");
        let s = dev.stats();
        assert_eq!((s.reads, s.writes, s.flushes, s.errors), (1, 1, 1, 0));
        assert_eq!((s.bytes_read, s.bytes_written), (1536, 512));
    }

    #[test]
    fn a_flush_syncs_only_what_was_written_since_the_last() {
        let file = image(64);
        let mut dev = Block::new(file, false, "").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        // The first flush syncs: what was written before the device is not known.
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        assert_eq!(dev.stats().syncs, 1);
        assert_eq!(submit_out(&mut dev, &mut d, &mut q, 4, &[7; 512]), (1, 0));
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        assert_eq!(dev.stats().syncs, 2);
        // A discard changes the file too.
        let t_discard = spec::VIRTIO_BLK_T_DISCARD;
        assert_eq!(
            submit_ranges(&mut dev, &mut d, &mut q, t_discard, &[(8, 8, 0)]),
            0
        );
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        let s = dev.stats();
        assert_eq!((s.flushes, s.syncs, s.discards, s.errors), (5, 3, 1, 0));
    }

    #[test]
    fn bad_requests_get_errors_without_io() {
        let file = image(8);
        let mut dev = Block::new(file.try_clone().unwrap(), false, "x").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        let ioerr = spec::VIRTIO_BLK_S_IOERR as u8;
        // Past the end, straddling the end, not whole sectors.
        assert_eq!(
            submit(&mut dev, &mut d, &mut q, T_IN, 8, &[512], true).1,
            ioerr
        );
        assert_eq!(
            submit(&mut dev, &mut d, &mut q, T_IN, 7, &[1024], true).1,
            ioerr
        );
        assert_eq!(
            submit(&mut dev, &mut d, &mut q, T_IN, 0, &[100], true).1,
            ioerr
        );
        assert_eq!(
            submit(&mut dev, &mut d, &mut q, T_OUT, u64::MAX, &[512], false).1,
            ioerr
        );
        // Unknown type.
        assert_eq!(
            submit(&mut dev, &mut d, &mut q, 99, 0, &[], true).1,
            spec::VIRTIO_BLK_S_UNSUPP as u8
        );
        // A header shorter than 16 bytes.
        let hdr = d.alloc(8);
        let status = d.alloc(1);
        let n = d.used_idx();
        d.add_chain(&[(hdr, 8, false), (status, 1, true)]);
        dev.process_queue(0, &mut q, &*d.mem).unwrap();
        assert_eq!(d.used_elem(n).1, 1);
        assert_eq!(bytes(&d, status, 1), [ioerr]);
        // No status byte at all: returned with nothing written.
        let n = d.used_idx();
        d.add_chain(&[(hdr, 8, false)]);
        dev.process_queue(0, &mut q, &*d.mem).unwrap();
        assert_eq!(d.used_elem(n).1, 0);
        assert_eq!(dev.stats().errors, 7);
        assert_eq!(dev.stats().reads + dev.stats().writes, 0);
    }

    /// Submits a DISCARD or WRITE_ZEROES request with `ranges`
    /// (sector, sectors, flags); returns the status.
    fn submit_ranges(
        dev: &mut Block,
        d: &mut MockDriver,
        q: &mut Queue,
        ty: u32,
        ranges: &[(u64, u32, u32)],
    ) -> u8 {
        let hdr = d.alloc(16);
        write_le(&*d.mem, hdr, ty).unwrap();
        write_le(&*d.mem, hdr + 8, 0u64).unwrap();
        let body = d.alloc(16 * ranges.len() as u32);
        for (i, &(sector, count, flags)) in ranges.iter().enumerate() {
            let at = body + 16 * i as u64;
            write_le(&*d.mem, at, sector).unwrap();
            write_le(&*d.mem, at + 8, count).unwrap();
            write_le(&*d.mem, at + 12, flags).unwrap();
        }
        let status = d.alloc(1);
        let n = d.used_idx();
        d.add_chain(&[
            (hdr, 16, false),
            (body, 16 * ranges.len() as u32, false),
            (status, 1, true),
        ]);
        dev.process_queue(0, q, &*d.mem).unwrap();
        assert_eq!(d.used_idx(), n.wrapping_add(1));
        bytes(d, status, 1)[0]
    }

    #[test]
    fn discard_and_write_zeroes() {
        let mut file = image(64);
        let mut dev = Block::new(file.try_clone().unwrap(), false, "z").unwrap();
        let f = dev.features();
        assert_ne!(f & 1 << spec::VIRTIO_BLK_F_DISCARD, 0);
        assert_ne!(f & 1 << spec::VIRTIO_BLK_F_WRITE_ZEROES, 0);
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        let t_discard = spec::VIRTIO_BLK_T_DISCARD;
        let t_zeroes = spec::VIRTIO_BLK_T_WRITE_ZEROES;
        let unmap = spec::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        assert_eq!(
            submit_ranges(&mut dev, &mut d, &mut q, t_discard, &[(8, 8, 0)]),
            0
        );
        assert_eq!(
            submit_ranges(
                &mut dev,
                &mut d,
                &mut q,
                t_zeroes,
                &[(20, 2, 0), (30, 3, unmap)]
            ),
            0
        );
        let all = contents(&mut file);
        let sector = |n: usize| &all[n * 512..(n + 1) * 512];
        for n in (8..16).chain(20..22).chain(30..33) {
            assert!(sector(n).iter().all(|&b| b == 0), "sector {n}");
        }
        for n in [7, 16, 19, 22, 29, 33] {
            assert!(sector(n).iter().any(|&b| b != 0), "sector {n} kept");
        }
        // Past the end, a flag discard does not know, a broken payload.
        let ioerr = spec::VIRTIO_BLK_S_IOERR as u8;
        let unsupp = spec::VIRTIO_BLK_S_UNSUPP as u8;
        assert_eq!(
            submit_ranges(&mut dev, &mut d, &mut q, t_discard, &[(60, 8, 0)]),
            ioerr
        );
        assert_eq!(
            submit_ranges(&mut dev, &mut d, &mut q, t_discard, &[(0, 1, unmap)]),
            unsupp
        );
        assert_eq!(
            submit_ranges(&mut dev, &mut d, &mut q, t_zeroes, &[(0, 1, 2)]),
            unsupp
        );
        let s = dev.stats();
        assert_eq!((s.discards, s.write_zeroes, s.errors), (1, 1, 3));
        // A read-only disk offers neither and refuses both.
        let mut ro = Block::new(image(8), true, "ro").unwrap();
        assert_eq!(ro.features() & 1 << spec::VIRTIO_BLK_F_DISCARD, 0);
        assert_eq!(
            submit_ranges(&mut ro, &mut d, &mut q, t_discard, &[(0, 1, 0)]),
            unsupp
        );
    }

    #[test]
    fn read_only_never_writes() {
        let mut file = image(8);
        let before = contents(&mut file);
        let mut dev = Block::new(file.try_clone().unwrap(), true, "ro").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        let (_, st, _) = submit(&mut dev, &mut d, &mut q, T_OUT, 0, &[512], false);
        assert_eq!(st, spec::VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        let (_, st, _) = submit(&mut dev, &mut d, &mut q, T_IN, 0, &[4096], true);
        assert_eq!(st, 0);
        let after = contents(&mut file);
        assert_eq!(before, after);
    }

    #[test]
    fn header_and_data_may_share_buffers() {
        // VIRTIO_F_VERSION_1 implies any layout: header and data in one
        // readable buffer, data and status in one writable buffer.
        let file = image(4);
        let mut dev = Block::new(file, false, "x").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        let out = d.alloc(16 + 512);
        write_le(&*d.mem, out, T_OUT).unwrap();
        write_le(&*d.mem, out + 8, 2u64).unwrap();
        write_bytes(&*d.mem, out + 16, &[7; 512]).unwrap();
        let st = d.alloc(1);
        d.add_chain(&[(out, 528, false), (st, 1, true)]);
        dev.process_queue(0, &mut q, &*d.mem).unwrap();
        assert_eq!(bytes(&d, st, 1), [0]);
        let hdr = d.alloc(16);
        write_le(&*d.mem, hdr, T_IN).unwrap();
        write_le(&*d.mem, hdr + 8, 2u64).unwrap();
        let inb = d.alloc(513);
        d.add_chain(&[(hdr, 16, false), (inb, 513, true)]);
        dev.process_queue(0, &mut q, &*d.mem).unwrap();
        assert_eq!(bytes(&d, inb, 513), [[7u8; 512].as_slice(), &[0]].concat());
        assert_eq!(d.used_elem(1).1, 513);
    }

    /// The overlay alone: reads see writes at any alignment, the base
    /// elsewhere; zeroing holds no buffer for whole chunks.
    #[test]
    fn overlay_reads_back_writes_over_a_base() {
        let base: Vec<u8> = (0..64 * 1024u64)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let from_base = |off: u64, b: &mut [u8]| -> io::Result<()> {
            b.copy_from_slice(&base[off as usize..off as usize + b.len()]);
            Ok(())
        };
        let mut model = base.clone();
        let mut o = Overlay::new();
        assert!(o.is_empty() && !o.covers_any(0, base.len() as u64));
        // Inside one chunk, across two, whole chunks, at the very end.
        for (at, len, v) in [
            (512u64, 512usize, 1u8),
            (4096 - 1024, 2048, 2),
            (8192, 8192, 3),
            (base.len() as u64 - 512, 512, 4),
            (600, 100, 5),
        ] {
            o.write(at, &vec![v; len], from_base).unwrap();
            model[at as usize..at as usize + len].fill(v);
        }
        assert_eq!(o.bytes(), 5 * CHUNK);
        o.zero(20 * 1024, 12 * 1024, from_base).unwrap();
        model[20 * 1024..32 * 1024].fill(0);
        // A zeroed chunk written again in part: zeros around the write.
        o.write(24 * 1024 + 100, &[9; 10], from_base).unwrap();
        model[24 * 1024 + 100..24 * 1024 + 110].fill(9);
        assert!(o.covers_any(8192, 1) && !o.covers_any(40 * 1024, 4096));
        let mut got = vec![0u8; base.len()];
        o.read(0, &mut got, from_base).unwrap();
        assert_eq!(got, model);
        // Unaligned windows.
        for (at, len) in [(100u64, 5000usize), (4095, 2), (30 * 1024, 9000)] {
            let mut w = vec![0u8; len];
            o.read(at, &mut w, from_base).unwrap();
            assert_eq!(w, model[at as usize..at as usize + len]);
        }
    }

    /// A copy-on-write device: writable for the driver, the file never
    /// changes, reads see what was written, flush and discard work.
    #[test]
    fn copy_on_write_never_writes_the_file() {
        let mut file = image(64);
        let before = contents(&mut file);
        let mut dev = Block::with_overlay(file.try_clone().unwrap(), "cow").unwrap();
        let f = dev.features();
        assert_eq!(f & 1 << spec::VIRTIO_BLK_F_RO, 0);
        assert_ne!(f & 1 << spec::VIRTIO_BLK_F_DISCARD, 0);
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        // Write sectors 3..5 (inside the first 4 KiB chunk) with 0xa5.
        assert_eq!(
            submit_out(&mut dev, &mut d, &mut q, 3, &[0xa5; 1024]),
            (1, 0)
        );
        // Discard sectors 16..24, zero 40..41.
        assert_eq!(
            submit_ranges(
                &mut dev,
                &mut d,
                &mut q,
                spec::VIRTIO_BLK_T_DISCARD,
                &[(16, 8, 0)]
            ),
            0
        );
        assert_eq!(
            submit_ranges(
                &mut dev,
                &mut d,
                &mut q,
                spec::VIRTIO_BLK_T_WRITE_ZEROES,
                &[(40, 1, 0)]
            ),
            0
        );
        assert_eq!(flush(&mut dev, &mut d, &mut q), 0);
        // Read everything back in uneven buffers.
        let (_, st, a) = submit(&mut dev, &mut d, &mut q, T_IN, 0, &[1536, 30720], true);
        assert_eq!(st, 0);
        let mut got = bytes(&d, a[0], 1536);
        got.extend(bytes(&d, a[1], 30720));
        let mut want = before.clone();
        want[3 * 512..5 * 512].fill(0xa5);
        want[16 * 512..24 * 512].fill(0);
        want[40 * 512..41 * 512].fill(0);
        want.truncate(1536 + 30720);
        let diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!((got.len(), diff), (want.len(), None));
        // A read the overlay does not touch takes the direct path.
        let (_, st, a) = submit(&mut dev, &mut d, &mut q, T_IN, 48, &[4096], true);
        assert_eq!(st, 0);
        assert_eq!(bytes(&d, a[0], 4096), before[48 * 512..56 * 512]);
        let after = contents(&mut file);
        assert_eq!(before, after, "the file was written");
        assert!(dev.stats().overlay_bytes >= CHUNK);
    }

    /// An image whose size is not a whole number of chunks: its last
    /// sector can be written and read back.
    #[test]
    fn copy_on_write_last_partial_chunk() {
        let file = image(9);
        let mut dev = Block::with_overlay(file, "cow").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        assert_eq!(
            submit_out(&mut dev, &mut d, &mut q, 8, &[0x77; 512]),
            (1, 0)
        );
        let (_, st, a) = submit(&mut dev, &mut d, &mut q, T_IN, 7, &[1024], true);
        assert_eq!(st, 0);
        assert_eq!(&bytes(&d, a[0] + 512, 512), &[0x77; 512]);
    }

    /// The overlay works over a file opened read-only.
    #[test]
    fn copy_on_write_over_a_read_only_file() {
        let path = std::env::temp_dir().join(format!("lkl-blk-cow-{}", std::process::id()));
        std::fs::write(&path, vec![0x11u8; 8192]).unwrap();
        let ro = File::open(&path).unwrap();
        let mut dev = Block::with_overlay(ro, "cow").unwrap();
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        let (_, st, _) = submit(&mut dev, &mut d, &mut q, T_OUT, 1, &[512], false);
        assert_eq!(st, 0);
        let (_, st, a) = submit(&mut dev, &mut d, &mut q, T_IN, 0, &[2048], true);
        assert_eq!(st, 0);
        let got = bytes(&d, a[0], 2048);
        assert_eq!(&got[..512], &[0x11; 512]);
        assert_eq!(&got[512..1024], &[0; 512]);
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x11u8; 8192]);
        std::fs::remove_file(&path).unwrap();
    }

    /// A reader beside the driver sees what the driver would: the
    /// overlay's chunks over the file; nothing past the capacity.
    #[test]
    fn read_at_sees_the_overlay() {
        let file = image(32);
        let want: Vec<u8> = (0..32 * SECTOR_SIZE)
            .map(|i| (i / 512) as u8 ^ i as u8)
            .collect();
        let mut dev = Block::with_overlay(file, "ra").unwrap();
        let mut buf = vec![0u8; 3000];
        dev.read_at(100, &mut buf).unwrap();
        assert_eq!(buf, want[100..3100]);
        assert_eq!(dev.stats().overlay_chunks, 0);
        let mut d = MockDriver::new(16);
        let mut q = d.queue();
        // Sector 9 written (zeros from the mock driver), sectors 16-23 discarded.
        let (_, st, _) = submit(&mut dev, &mut d, &mut q, T_OUT, 9, &[512], false);
        assert_eq!(st, 0);
        dev.overlay
            .as_mut()
            .unwrap()
            .zero(16 * SECTOR_SIZE, 8 * SECTOR_SIZE, |_, b| {
                b.fill(0xee);
                Ok(())
            })
            .unwrap();
        assert_eq!(dev.stats().overlay_chunks, 2);
        let mut all = vec![0u8; (32 * SECTOR_SIZE) as usize];
        dev.read_at(0, &mut all).unwrap();
        let mut expect = want.clone();
        expect[9 * 512..10 * 512].fill(0);
        expect[16 * 512..24 * 512].fill(0);
        assert_eq!(all, expect);
        assert!(dev.read_at(32 * SECTOR_SIZE - 10, &mut buf).is_err());
        assert!(dev.read_at(u64::MAX - 10, &mut buf).is_err());
    }
}
