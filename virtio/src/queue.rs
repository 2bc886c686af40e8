//! A split virtqueue, device side (virtio 1.2, section 2.7).
//!
//! Following rust-vmm's `virtio-queue`: [`Queue`] holds only the ring
//! addresses, the size and the device's two indexes; the memory is passed
//! into each call. The driver's values are validated before use: ring
//! addresses and alignment when the queue is made ready, and every
//! descriptor chain (indexes, length, addresses, readable-before-writable
//! order) before the device sees it.
//!
//! Event suppression is either the basic one (`VRING_AVAIL_F_NO_INTERRUPT`)
//! or, when `VIRTIO_RING_F_EVENT_IDX` is negotiated, the event indexes
//! (`used_event`, `avail_event`; section 2.7.10). Indirect descriptors are
//! not offered.

use std::sync::atomic::{fence, Ordering};

use crate::spec;

use super::memory::{read_le, write_le, GuestMemory};
use super::QueueError;

/// Bytes per descriptor.
const DESC_SIZE: u64 = 16;
/// `VRING_DESC_F_NEXT`.
const F_NEXT: u16 = spec::VRING_DESC_F_NEXT as u16;
/// `VRING_DESC_F_WRITE`.
const F_WRITE: u16 = spec::VRING_DESC_F_WRITE as u16;
/// `VRING_DESC_F_INDIRECT`.
const F_INDIRECT: u16 = spec::VRING_DESC_F_INDIRECT as u16;

/// One buffer of a chain, checked against the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Driver address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it (else it reads it).
    pub writable: bool,
}

/// A validated descriptor chain: the device-readable buffers come first,
/// then the device-writable ones.
///
/// [`Queue::pop_into`] refills a chain in place, reusing its buffer, so a
/// device that keeps its chains pops without allocating; [`Queue::pop`]
/// makes a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescriptorChain {
    /// The head index, returned in the used ring.
    pub head: u16,
    /// The buffers in chain order.
    descs: Vec<Descriptor>,
    /// How many of `descs` are device-readable (they come first).
    readable: usize,
}

impl DescriptorChain {
    /// The buffers in chain order.
    pub fn descs(&self) -> &[Descriptor] {
        &self.descs
    }

    /// The device-readable buffers (`.as_slice()` gives them as a slice).
    pub fn readable(&self) -> std::slice::Iter<'_, Descriptor> {
        self.descs[..self.readable].iter()
    }

    /// The device-writable buffers (`.as_slice()` gives them as a slice).
    pub fn writable(&self) -> std::slice::Iter<'_, Descriptor> {
        self.descs[self.readable..].iter()
    }
}

/// A split virtqueue's device-side state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    next_avail: u16,
    next_used: u16,
    event_idx: bool,
    /// `next_used` when an interrupt was last considered (event index).
    signalled_used: Option<u16>,
}

impl Queue {
    /// A queue of at most `max_size` entries (a power of two), sized to
    /// the maximum until the driver says otherwise.
    pub fn new(max_size: u16) -> Self {
        debug_assert!(max_size.is_power_of_two());
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            event_idx: false,
            signalled_used: None,
        }
    }

    /// Uses the event indexes (`VIRTIO_RING_F_EVENT_IDX` negotiated).
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Back to the state after [`Queue::new`].
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// The largest size the driver may choose.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether the driver made the queue live.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The descriptor table, available ring and used ring addresses.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc_table, self.avail_ring, self.used_ring)
    }

    /// Sets the size; refused (state unchanged) unless it is a power of two
    /// in `1..=max_size`.
    pub fn set_size(&mut self, size: u16) -> Result<(), QueueError> {
        if size == 0 || size > self.max_size || !size.is_power_of_two() {
            return Err(QueueError::Size {
                size,
                max: self.max_size,
            });
        }
        self.size = size;
        Ok(())
    }

    /// Sets the low (`high == false`) or high half of the descriptor table
    /// address.
    pub fn set_desc_table(&mut self, half: u32, high: bool) {
        set_half(&mut self.desc_table, half, high);
    }

    /// Sets half of the available ring address.
    pub fn set_avail_ring(&mut self, half: u32, high: bool) {
        set_half(&mut self.avail_ring, half, high);
    }

    /// Sets half of the used ring address.
    pub fn set_used_ring(&mut self, half: u32, high: bool) {
        set_half(&mut self.used_ring, half, high);
    }

    /// Makes the queue live (after checking the rings) or stops it. A
    /// refused queue stays not ready.
    pub fn set_ready<M: GuestMemory + ?Sized>(
        &mut self,
        ready: bool,
        mem: &M,
    ) -> Result<(), QueueError> {
        if ready {
            self.validate(mem)?;
            // A queue starts from index 0 (the driver zeroes the rings).
            self.next_avail = 0;
            self.next_used = 0;
            self.signalled_used = None;
        }
        self.ready = ready;
        Ok(())
    }

    /// Checks alignment and that the three areas lie in memory.
    fn validate<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<(), QueueError> {
        let n = u64::from(self.size);
        let areas = [
            ("descriptor table", self.desc_table, 16, DESC_SIZE * n),
            ("available ring", self.avail_ring, 2, 4 + 2 * n + 2),
            ("used ring", self.used_ring, 4, 4 + 8 * n + 2),
        ];
        for (what, addr, align, len) in areas {
            if addr % align != 0 {
                return Err(QueueError::Misaligned { what, addr, align });
            }
            if mem.translate(addr, len).is_none() {
                return Err(QueueError::Memory { addr, len });
            }
        }
        Ok(())
    }

    /// Takes the next chain the driver made available, validated, or
    /// `None` if there is none. Allocates the chain: a device that pops
    /// often keeps one and uses [`Queue::pop_into`].
    pub fn pop<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<Option<DescriptorChain>, QueueError> {
        let mut chain = DescriptorChain::default();
        Ok(self.pop_into(mem, &mut chain)?.then_some(chain))
    }

    /// Takes the next chain the driver made available, validated, into
    /// `chain` (its buffer reused: no allocation once it has held a chain
    /// as long); returns whether there was one. `chain` is left empty when
    /// there was none or the chain was malformed.
    pub fn pop_into<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chain: &mut DescriptorChain,
    ) -> Result<bool, QueueError> {
        chain.descs.clear();
        chain.readable = 0;
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let mut avail_idx: u16 = read_le(mem, self.avail_ring + 2)?;
        if avail_idx == self.next_avail && self.event_idx {
            // Ask to be notified of the next buffer, then look again: the
            // driver may have added one before it could see the request.
            let avail_event = self.used_ring + 4 + 8 * u64::from(self.size);
            write_le(mem, avail_event, self.next_avail)?;
            fence(Ordering::SeqCst);
            avail_idx = read_le(mem, self.avail_ring + 2)?;
        }
        // The ring entries written before the index must be seen after it.
        fence(Ordering::Acquire);
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(false);
        }
        if pending > self.size {
            return Err(QueueError::AvailOverrun {
                pending,
                size: self.size,
            });
        }
        let slot = u64::from(self.next_avail % self.size);
        let head: u16 = read_le(mem, self.avail_ring + 4 + 2 * slot)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        let read = self.read_chain(mem, head, chain);
        if read.is_err() {
            chain.descs.clear();
            chain.readable = 0;
        }
        read.map(|()| true)
    }

    /// Walks and checks the chain starting at `head`, into `chain` (empty).
    fn read_chain<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        head: u16,
        chain: &mut DescriptorChain,
    ) -> Result<(), QueueError> {
        chain.head = head;
        let descs = &mut chain.descs;
        let mut index = head;
        loop {
            if index >= self.size {
                return Err(QueueError::DescIndex {
                    index,
                    size: self.size,
                });
            }
            if descs.len() >= usize::from(self.size) {
                return Err(QueueError::ChainTooLong {
                    head,
                    size: self.size,
                });
            }
            let at = self.desc_table + DESC_SIZE * u64::from(index);
            let addr: u64 = read_le(mem, at)?;
            let len: u32 = read_le(mem, at + 8)?;
            let flags: u16 = read_le(mem, at + 12)?;
            let next: u16 = read_le(mem, at + 14)?;
            if flags & F_INDIRECT != 0 {
                return Err(QueueError::Indirect { index });
            }
            if mem.translate(addr, u64::from(len)).is_none() {
                return Err(QueueError::Memory {
                    addr,
                    len: u64::from(len),
                });
            }
            let writable = flags & F_WRITE != 0;
            if !writable && descs.last().is_some_and(|d: &Descriptor| d.writable) {
                return Err(QueueError::Order { head });
            }
            descs.push(Descriptor {
                addr,
                len,
                writable,
            });
            if !writable {
                chain.readable += 1;
            }
            if flags & F_NEXT == 0 {
                return Ok(());
            }
            index = next;
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written.
    pub fn add_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if head >= self.size {
            return Err(QueueError::DescIndex {
                index: head,
                size: self.size,
            });
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used_ring + 4 + 8 * slot;
        write_le(mem, elem, u32::from(head))?;
        write_le(mem, elem + 4, len)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element must be visible before the index that publishes it.
        fence(Ordering::Release);
        write_le(mem, self.used_ring + 2, self.next_used)
    }

    /// Whether the driver wants an interrupt for the buffers used since it
    /// was last asked: it has not set `VRING_AVAIL_F_NO_INTERRUPT`, or, with
    /// event indexes, `used_event` lies among them.
    pub fn needs_notification<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, QueueError> {
        // The used index must be visible before the driver's choice is read.
        fence(Ordering::SeqCst);
        if !self.event_idx {
            let flags: u16 = read_le(mem, self.avail_ring)?;
            return Ok(flags & spec::VRING_AVAIL_F_NO_INTERRUPT as u16 == 0);
        }
        let used_event: u16 = read_le(mem, self.avail_ring + 4 + 2 * u64::from(self.size))?;
        let new = self.next_used;
        Ok(match self.signalled_used.replace(new) {
            None => true,
            // vring_need_event(): did used_event fall in (old, new]?
            Some(old) => new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old),
        })
    }
}

fn set_half(addr: &mut u64, half: u32, high: bool) {
    *addr = if high {
        (*addr & 0xffff_ffff) | (u64::from(half) << 32)
    } else {
        (*addr & !0xffff_ffff) | u64::from(half)
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::memory::tests::VecMemory;
    use super::*;

    /// The driver side, for tests: lays out the rings in a [`VecMemory`]
    /// and makes chains available the way Linux does.
    pub struct MockDriver {
        pub mem: std::sync::Arc<VecMemory>,
        pub size: u16,
        pub desc: u64,
        pub avail: u64,
        pub used: u64,
        /// Where the next data buffer goes.
        pub data_next: u64,
        next_desc: u16,
        avail_idx: u16,
    }

    pub const BASE: u64 = 0x10_0000;

    impl MockDriver {
        pub fn new(size: u16) -> Self {
            let mem = std::sync::Arc::new(VecMemory::new(BASE, 4 << 20));
            let desc = BASE;
            let avail = desc + 16 * u64::from(size);
            let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
            MockDriver {
                mem,
                size,
                desc,
                avail,
                used,
                data_next: BASE + (1 << 20),
                next_desc: 0,
                avail_idx: 0,
            }
        }

        /// A queue set up over these rings and made ready.
        pub fn queue(&self) -> Queue {
            let mut q = Queue::new(self.size);
            for (high, shift) in [(false, 0), (true, 32)] {
                q.set_desc_table((self.desc >> shift) as u32, high);
                q.set_avail_ring((self.avail >> shift) as u32, high);
                q.set_used_ring((self.used >> shift) as u32, high);
            }
            q.set_ready(true, &self.mem).unwrap();
            q
        }

        /// Room for `len` bytes of data; returns its address.
        pub fn alloc(&mut self, len: u32) -> u64 {
            let at = self.data_next;
            self.data_next = (at + u64::from(len)).next_multiple_of(16);
            at
        }

        /// Writes raw descriptor `i`.
        pub fn write_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let at = self.desc + 16 * u64::from(i);
            write_le(&self.mem, at, addr).unwrap();
            write_le(&self.mem, at + 8, len).unwrap();
            write_le(&self.mem, at + 12, flags).unwrap();
            write_le(&self.mem, at + 14, next).unwrap();
        }

        /// Makes descriptor `head` available.
        pub fn publish(&mut self, head: u16) {
            let slot = u64::from(self.avail_idx % self.size);
            write_le(&self.mem, self.avail + 4 + 2 * slot, head).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            write_le(&self.mem, self.avail + 2, self.avail_idx).unwrap();
        }

        /// Adds a chain of `(addr, len, writable)` buffers; returns its head.
        pub fn add_chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc;
            for (k, &(addr, len, writable)) in bufs.iter().enumerate() {
                let i = (head + k as u16) % self.size;
                let last = k + 1 == bufs.len();
                let flags = if writable { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
                self.write_desc(i, addr, len, flags, (i + 1) % self.size);
            }
            self.next_desc = (head + bufs.len() as u16) % self.size;
            self.publish(head);
            head
        }

        /// The used ring's index and element `n`.
        pub fn used_idx(&self) -> u16 {
            read_le(&self.mem, self.used + 2).unwrap()
        }

        pub fn used_elem(&self, n: u16) -> (u32, u32) {
            let at = self.used + 4 + 8 * u64::from(n % self.size);
            (
                read_le(&self.mem, at).unwrap(),
                read_le(&self.mem, at + 4).unwrap(),
            )
        }
    }

    #[test]
    fn setters_validate_and_keep_state_on_error() {
        let d = MockDriver::new(16);
        let mut q = Queue::new(16);
        assert!(q.set_size(0).is_err());
        assert!(q.set_size(12).is_err());
        assert!(q.set_size(32).is_err());
        assert_eq!(q.size(), 16);
        q.set_size(8).unwrap();
        assert_eq!(q.size(), 8);
        q.set_desc_table(0x1234_5678, true);
        q.set_desc_table(0x9abc_def0, false);
        assert_eq!(q.addresses().0, 0x1234_5678_9abc_def0);
        // Outside memory: refused, not ready.
        assert!(matches!(
            q.set_ready(true, &d.mem),
            Err(QueueError::Memory { .. })
        ));
        assert!(!q.ready());
        // Misaligned descriptor table.
        let mut q = d.queue();
        q.set_ready(false, &d.mem).unwrap();
        q.set_desc_table(d.desc as u32 + 8, false);
        assert!(matches!(
            q.set_ready(true, &d.mem),
            Err(QueueError::Misaligned {
                what: "descriptor table",
                ..
            })
        ));
        assert_eq!(Queue::new(4).pop(&d.mem), Err(QueueError::NotReady));
    }

    #[test]
    fn pops_chains_and_publishes_used() {
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        assert_eq!(q.pop(&d.mem).unwrap(), None);
        let a = d.alloc(16);
        let b = d.alloc(512);
        let c = d.alloc(1);
        let head = d.add_chain(&[(a, 16, false), (b, 512, true), (c, 1, true)]);
        let chain = q.pop(&d.mem).unwrap().unwrap();
        assert_eq!(chain.head, head);
        assert_eq!(chain.readable().count(), 1);
        assert_eq!(
            chain.writable().map(|d| d.len).collect::<Vec<_>>(),
            [512, 1]
        );
        assert_eq!(q.pop(&d.mem).unwrap(), None);
        q.add_used(&d.mem, head, 513).unwrap();
        assert_eq!(d.used_idx(), 1);
        assert_eq!(d.used_elem(0), (u32::from(head), 513));
        assert!(q.needs_notification(&d.mem).unwrap());
        write_le(&d.mem, d.avail, 1u16).unwrap();
        assert!(!q.needs_notification(&d.mem).unwrap());
        // Indexes wrap around the ring many times.
        for _ in 0..40 {
            let h = d.add_chain(&[(a, 16, false), (c, 1, true)]);
            let chain = q.pop(&d.mem).unwrap().unwrap();
            assert_eq!(chain.head, h);
            q.add_used(&d.mem, h, 1).unwrap();
        }
        assert_eq!(d.used_idx(), 41);
    }

    #[test]
    fn pop_into_reuses_the_chain() {
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        let (a, b, c) = (d.alloc(16), d.alloc(512), d.alloc(1));
        let mut chain = DescriptorChain::default();
        assert!(!q.pop_into(&d.mem, &mut chain).unwrap());
        let head = d.add_chain(&[(a, 16, false), (b, 512, true), (c, 1, true)]);
        assert!(q.pop_into(&d.mem, &mut chain).unwrap());
        assert_eq!(chain.head, head);
        assert_eq!(chain.readable().as_slice().len(), 1);
        assert_eq!(
            chain.writable().map(|d| d.len).collect::<Vec<_>>(),
            [512, 1]
        );
        q.add_used(&d.mem, head, 0).unwrap();
        // The next chain lands in the same buffer: no allocation.
        let at = chain.descs().as_ptr();
        let head = d.add_chain(&[(c, 1, false), (a, 16, false), (b, 512, false)]);
        assert!(q.pop_into(&d.mem, &mut chain).unwrap());
        assert_eq!(chain.descs().as_ptr(), at);
        assert_eq!(chain.head, head);
        assert_eq!(chain.readable().as_slice().len(), 3);
        assert_eq!(chain.writable().count(), 0);
        // Nothing left: the chain is emptied, as after a malformed one.
        assert!(!q.pop_into(&d.mem, &mut chain).unwrap());
        assert!(chain.descs().is_empty());
        d.write_desc(0, a, 16, F_WRITE | F_NEXT, 1);
        d.write_desc(1, a, 16, 0, 0);
        d.publish(0);
        assert_eq!(
            q.pop_into(&d.mem, &mut chain),
            Err(QueueError::Order { head: 0 })
        );
        assert!(chain.descs().is_empty());
        assert_eq!(chain.readable().count() + chain.writable().count(), 0);
    }

    #[test]
    fn event_indexes() {
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        q.set_event_idx(true);
        let avail_event = d.used + 4 + 8 * 8;
        let used_event = d.avail + 4 + 2 * 8;
        write_le(&*d.mem, avail_event, 0xffffu16).unwrap();
        // An empty queue asks for the next buffer.
        assert_eq!(q.pop(&*d.mem).unwrap(), None);
        assert_eq!(read_le::<u16, _>(&*d.mem, avail_event).unwrap(), 0);
        let a = d.alloc(16);
        let used = |q: &mut Queue, d: &mut MockDriver| {
            let h = d.add_chain(&[(a, 16, true)]);
            let c = q.pop(&*d.mem).unwrap().unwrap();
            q.add_used(&*d.mem, c.head, 0).unwrap();
            assert_eq!(c.head, h);
        };
        used(&mut q, &mut d);
        assert_eq!(q.pop(&*d.mem).unwrap(), None);
        assert_eq!(read_le::<u16, _>(&*d.mem, avail_event).unwrap(), 1);
        // The first decision always interrupts.
        assert!(q.needs_notification(&*d.mem).unwrap());
        // used_event 0 is behind: no interrupt for the second buffer.
        used(&mut q, &mut d);
        assert!(!q.needs_notification(&*d.mem).unwrap());
        // The driver asks for an interrupt once used index 2 is passed.
        write_le(&*d.mem, used_event, 2u16).unwrap();
        used(&mut q, &mut d);
        assert!(q.needs_notification(&*d.mem).unwrap());
        // Nothing new since: no interrupt.
        assert!(!q.needs_notification(&*d.mem).unwrap());
        // The basic flag means nothing with event indexes.
        write_le(&*d.mem, d.avail, 1u16).unwrap();
        write_le(&*d.mem, used_event, 3u16).unwrap();
        used(&mut q, &mut d);
        assert!(q.needs_notification(&*d.mem).unwrap());
    }

    #[test]
    fn bad_chains_are_refused() {
        let mut d = MockDriver::new(4);
        let mut q = d.queue();
        let a = d.alloc(16);
        // Index out of range.
        d.write_desc(0, a, 16, F_NEXT, 9);
        d.publish(0);
        assert_eq!(
            q.pop(&d.mem),
            Err(QueueError::DescIndex { index: 9, size: 4 })
        );
        // A loop.
        d.write_desc(0, a, 16, F_NEXT, 1);
        d.write_desc(1, a, 16, F_NEXT, 0);
        d.publish(0);
        assert_eq!(
            q.pop(&d.mem),
            Err(QueueError::ChainTooLong { head: 0, size: 4 })
        );
        // A buffer outside memory.
        d.write_desc(2, BASE - 8, 16, 0, 0);
        d.publish(2);
        assert!(matches!(q.pop(&d.mem), Err(QueueError::Memory { .. })));
        // A length that runs past the end of memory.
        d.write_desc(2, a, u32::MAX, 0, 0);
        d.publish(2);
        assert!(matches!(q.pop(&d.mem), Err(QueueError::Memory { .. })));
        // Readable after writable.
        d.write_desc(0, a, 16, F_WRITE | F_NEXT, 1);
        d.write_desc(1, a, 16, 0, 0);
        d.publish(0);
        assert_eq!(q.pop(&d.mem), Err(QueueError::Order { head: 0 }));
        // Indirect.
        d.write_desc(3, a, 16, F_INDIRECT, 0);
        d.publish(3);
        assert_eq!(q.pop(&d.mem), Err(QueueError::Indirect { index: 3 }));
        // The driver claims more buffers than the ring holds.
        write_le(&d.mem, d.avail + 2, 100u16).unwrap();
        assert!(matches!(
            q.pop(&d.mem),
            Err(QueueError::AvailOverrun { .. })
        ));
        assert!(q.add_used(&d.mem, 4, 0).is_err());
    }
}
