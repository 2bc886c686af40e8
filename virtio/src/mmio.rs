//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the
//! register file the kernel's `virtio_mmio` driver reads and writes, and the
//! device status state machine around a [`VirtioDevice`].
//!
//! Device state is explicit: the status register moves through
//! ACKNOWLEDGE, DRIVER, FEATURES_OK (accepted only for a subset of the
//! offered features that includes `VIRTIO_F_VERSION_1`) and DRIVER_OK, which
//! activates the device; writing 0 resets everything. Queue registers act
//! on the queue selected by `QueueSel`, and only while it is not ready.
//!
//! A `QueueNotify` write runs the device's queue handler on the writing
//! thread. The transport's lock is released before the interrupt is
//! raised: the handler may run at once on the same thread and read
//! `InterruptStatus`, or notify again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::spec;

use super::memory::GuestMemory;
use super::queue::Queue;
use super::QueueError;

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
/// Our vendor id: "LKL".
const VENDOR: u32 = 0x004c_4b4c;
/// The register window the transport needs (registers, then config space).
pub const WINDOW_SIZE: u64 = 0x200;

/// A device's register file, as the kernel reads and writes it.
///
/// Accesses are 1, 2, 4 or 8 bytes at `offset` from the window start, in
/// little-endian order, from any host thread (usually one holding the
/// kernel's CPU). `lkl` gives each device a window and dispatches the
/// kernel's `iomem_access` calls to it.
pub trait MmioDevice: Send + Sync {
    /// Fills `data` with the register contents at `offset`.
    fn read(&self, offset: u64, data: &mut [u8]);
    /// Writes `data` to the registers at `offset`.
    fn write(&self, offset: u64, data: &[u8]);
}

/// A virtio device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (`VIRTIO_ID_BLOCK`, ...).
    fn device_id(&self) -> u32;
    /// The features offered, `VIRTIO_F_VERSION_1` included.
    fn features(&self) -> u64;
    /// The maximum size of each queue (powers of two); its length is the
    /// number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Reads the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space at `offset`.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set DRIVER_OK with these features.
    fn activate(&mut self, features: u64);
    /// The driver reset the device.
    fn reset(&mut self);
    /// The driver set DRIVER_OK: [`VirtioDevice::activate`], with the
    /// queues as the driver set them up. A device that serves a queue from
    /// a thread of its own (a network device's receive queue) keeps a copy
    /// here and from then on owns that queue's indexes: it raises the
    /// interrupt itself with [`MmioTransport::signal_used`], and the
    /// transport's copy is not used for it until the next reset.
    fn activate_queues(&mut self, features: u64, queues: &[Queue]) {
        let _ = queues;
        self.activate(features);
    }
    /// Handles what the driver made available in queue `index`. Returns
    /// whether buffers were put in the used ring.
    ///
    /// # Errors
    /// A malformed queue: the transport then asks the driver for a reset.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError>;
}

/// How the transport raises its interrupt: `lkl` implements it with
/// `lkl_trigger_irq` on the line it reserved for the device.
pub trait Interrupt: Send + Sync {
    /// Raises the device's line. Callable from any thread, with no lock of
    /// the transport held; the kernel's handler may run on this thread
    /// before it returns.
    fn trigger(&self);
}

struct State<D> {
    device: D,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<Queue>,
}

/// A virtio device's MMIO register file.
pub struct MmioTransport<D> {
    state: Mutex<State<D>>,
    /// `InterruptStatus`: read by the interrupt handler without the lock.
    isr: AtomicU32,
    mem: Box<dyn GuestMemory>,
    irq: Box<dyn Interrupt>,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// A transport for `device`, reaching buffers through `mem` and
    /// raising `irq`.
    pub fn new(device: D, mem: Box<dyn GuestMemory>, irq: Box<dyn Interrupt>) -> Self {
        let queues = device
            .queue_max_sizes()
            .into_iter()
            .map(Queue::new)
            .collect();
        MmioTransport {
            state: Mutex::new(State {
                device,
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                queues,
            }),
            isr: AtomicU32::new(0),
            mem,
            irq,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<D>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the device (for statistics and tests).
    pub fn with_device<R>(&self, f: impl FnOnce(&D) -> R) -> R {
        f(&self.lock().device)
    }

    /// Runs `f` on the device, mutably, under the transport's lock: once it
    /// returns, no queue work of the device is in progress.
    pub fn with_device_mut<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.lock().device)
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.lock().status
    }

    fn read_register(&self, offset: u32) -> u32 {
        if offset == spec::VIRTIO_MMIO_INTERRUPT_STATUS {
            return self.isr.load(Ordering::Acquire);
        }
        let s = self.lock();
        let queue = s.queues.get(s.queue_sel as usize);
        match offset {
            spec::VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            spec::VIRTIO_MMIO_VERSION => 2,
            spec::VIRTIO_MMIO_DEVICE_ID => s.device.device_id(),
            spec::VIRTIO_MMIO_VENDOR_ID => VENDOR,
            spec::VIRTIO_MMIO_DEVICE_FEATURES => match s.device_features_sel {
                0 => s.device.features() as u32,
                1 => (s.device.features() >> 32) as u32,
                _ => 0,
            },
            spec::VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size().into()),
            spec::VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| q.ready().into()),
            spec::VIRTIO_MMIO_STATUS => s.status,
            spec::VIRTIO_MMIO_CONFIG_GENERATION => 0,
            // No shared memory regions: a length of all ones says so.
            spec::VIRTIO_MMIO_SHM_LEN_LOW
            | spec::VIRTIO_MMIO_SHM_LEN_HIGH
            | spec::VIRTIO_MMIO_SHM_BASE_LOW
            | spec::VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            _ => 0,
        }
    }

    /// Handles a register write; returns whether to raise the interrupt.
    fn write_register(&self, offset: u32, value: u32) -> bool {
        let mut s = self.lock();
        let s = &mut *s;
        let sel = s.queue_sel as usize;
        // Queue registers take effect on a selected queue that is not live.
        let queue = s.queues.get_mut(sel).filter(|q| !q.ready());
        match offset {
            spec::VIRTIO_MMIO_DEVICE_FEATURES_SEL => s.device_features_sel = value,
            spec::VIRTIO_MMIO_DRIVER_FEATURES_SEL => s.driver_features_sel = value,
            // Features are fixed once FEATURES_OK is set.
            spec::VIRTIO_MMIO_DRIVER_FEATURES
                if s.status & spec::VIRTIO_CONFIG_S_FEATURES_OK == 0 =>
            {
                let f = &mut s.driver_features;
                match s.driver_features_sel {
                    0 => *f = (*f & !0xffff_ffff) | u64::from(value),
                    1 => *f = (*f & 0xffff_ffff) | (u64::from(value) << 32),
                    _ => {}
                }
            }
            spec::VIRTIO_MMIO_QUEUE_SEL => s.queue_sel = value,
            spec::VIRTIO_MMIO_QUEUE_NUM => {
                if let Some(q) = queue {
                    // A bad size is left unapplied; the driver sees it fail
                    // when it makes the queue ready with the old one.
                    let _ = q.set_size(value.try_into().unwrap_or(0));
                }
            }
            spec::VIRTIO_MMIO_QUEUE_READY => {
                let event_idx = s.driver_features & 1 << spec::VIRTIO_RING_F_EVENT_IDX != 0;
                if let Some(q) = s.queues.get_mut(sel) {
                    q.set_event_idx(event_idx);
                    if let Err(e) = q.set_ready(value == 1, &*self.mem) {
                        crate::diag::write_stderr(
                            format!("lkl: virtio-mmio: queue {sel} refused: {e}\n").as_bytes(),
                        );
                    }
                }
            }
            spec::VIRTIO_MMIO_QUEUE_DESC_LOW => {
                queue.map_or((), |q| q.set_desc_table(value, false))
            }
            spec::VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                queue.map_or((), |q| q.set_desc_table(value, true))
            }
            spec::VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                queue.map_or((), |q| q.set_avail_ring(value, false))
            }
            spec::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                queue.map_or((), |q| q.set_avail_ring(value, true))
            }
            spec::VIRTIO_MMIO_QUEUE_USED_LOW => queue.map_or((), |q| q.set_used_ring(value, false)),
            spec::VIRTIO_MMIO_QUEUE_USED_HIGH => queue.map_or((), |q| q.set_used_ring(value, true)),
            spec::VIRTIO_MMIO_INTERRUPT_ACK => {
                self.isr.fetch_and(!value, Ordering::AcqRel);
            }
            spec::VIRTIO_MMIO_STATUS => return self.set_status(s, value),
            spec::VIRTIO_MMIO_QUEUE_NOTIFY => return self.notify(s, value as usize),
            _ => {}
        }
        false
    }

    fn set_status(&self, s: &mut State<D>, value: u32) -> bool {
        if value == 0 {
            s.device.reset();
            s.queues.iter_mut().for_each(Queue::reset);
            s.status = 0;
            s.driver_features = 0;
            s.device_features_sel = 0;
            s.driver_features_sel = 0;
            s.queue_sel = 0;
            self.isr.store(0, Ordering::Release);
            return false;
        }
        let new = value & !s.status;
        let mut value = value;
        if new & spec::VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let offered = s.device.features();
            let version_1 = 1u64 << spec::VIRTIO_F_VERSION_1;
            if s.driver_features & !offered != 0 || s.driver_features & version_1 == 0 {
                // Not accepted: the driver reads the bit back and gives up.
                value &= !spec::VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if new & spec::VIRTIO_CONFIG_S_DRIVER_OK != 0
            && value & spec::VIRTIO_CONFIG_S_FEATURES_OK != 0
        {
            s.device.activate_queues(s.driver_features, &s.queues);
        }
        s.status = value;
        false
    }

    /// Runs a host thread's work on queue `index` (a network device's
    /// receive path, fed from outside the kernel): `f` gets the device, the
    /// queue and the memory under the transport's lock and returns whether
    /// it put buffers in the used ring. The interrupt is raised, after the
    /// lock is dropped, when the driver wants it.
    ///
    /// Returns `None`, without running `f`, while the driver has not set
    /// DRIVER_OK (or the device needs a reset) or the queue is not ready:
    /// the caller should wait for a notify.
    pub fn run_queue<F>(&self, index: usize, f: F) -> Option<bool>
    where
        F: FnOnce(&mut D, &mut Queue, &dyn GuestMemory) -> Result<bool, QueueError>,
    {
        let (used, raise) = {
            let mut s = self.lock();
            let s = &mut *s;
            if !Self::live(s, index) {
                return None;
            }
            let queue = &mut s.queues[index];
            let mem = &*self.mem;
            let result = f(&mut s.device, queue, mem);
            let used = matches!(result, Ok(true));
            (used, self.conclude(s, index, result))
        };
        if raise {
            self.irq.trigger();
        }
        Some(used)
    }

    /// For a device serving a queue it owns (see
    /// [`VirtioDevice::activate_queues`]), from any thread that does not
    /// hold the transport's lock: flags used buffers in `InterruptStatus`
    /// and raises the interrupt, without taking the lock.
    pub fn signal_used(&self) {
        self.isr
            .fetch_or(spec::VIRTIO_MMIO_INT_VRING, Ordering::AcqRel);
        self.irq.trigger();
    }

    /// For a device serving a queue it owns: the driver put something
    /// malformed in queue `index`; as for the transport's own queues, the
    /// device asks for a reset. Takes the transport's lock.
    pub fn queue_failed(&self, index: usize, error: &QueueError) {
        let raise = self.conclude(&mut self.lock(), index, Err(error.clone()));
        if raise {
            self.irq.trigger();
        }
    }

    /// Whether queue `index` may be used: DRIVER_OK, no reset pending, and
    /// the queue ready.
    fn live(s: &State<D>, index: usize) -> bool {
        s.status & spec::VIRTIO_CONFIG_S_DRIVER_OK != 0
            && s.status & spec::VIRTIO_CONFIG_S_NEEDS_RESET == 0
            && s.queues.get(index).is_some_and(Queue::ready)
    }

    fn notify(&self, s: &mut State<D>, index: usize) -> bool {
        if !Self::live(s, index) {
            return false;
        }
        let queue = &mut s.queues[index];
        let mem = &*self.mem;
        let result = s.device.process_queue(index, queue, mem);
        self.conclude(s, index, result)
    }

    /// After queue `index` was processed with `result`: sets the interrupt
    /// status and returns whether to raise the interrupt.
    fn conclude(&self, s: &mut State<D>, index: usize, result: Result<bool, QueueError>) -> bool {
        let mem = &*self.mem;
        let queue = &mut s.queues[index];
        let result = result.and_then(|used| Ok(used && queue.needs_notification(mem)?));
        match result {
            Ok(false) => false,
            Ok(true) => {
                self.isr
                    .fetch_or(spec::VIRTIO_MMIO_INT_VRING, Ordering::AcqRel);
                true
            }
            Err(e) => {
                crate::diag::write_stderr(
                    format!("lkl: virtio-mmio: queue {index}: {e}; the device needs a reset\n")
                        .as_bytes(),
                );
                s.status |= spec::VIRTIO_CONFIG_S_NEEDS_RESET;
                self.isr
                    .fetch_or(spec::VIRTIO_MMIO_INT_CONFIG, Ordering::AcqRel);
                true
            }
        }
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(spec::VIRTIO_MMIO_CONFIG) {
            let off = offset - u64::from(spec::VIRTIO_MMIO_CONFIG);
            self.lock().device.read_config(off, data);
            return;
        }
        data.fill(0);
        // Registers are 32-bit; other widths read as zero.
        if data.len() == 4 && offset & 3 == 0 {
            data.copy_from_slice(&self.read_register(offset as u32).to_le_bytes());
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if offset >= u64::from(spec::VIRTIO_MMIO_CONFIG) {
            let off = offset - u64::from(spec::VIRTIO_MMIO_CONFIG);
            self.lock().device.write_config(off, data);
            return;
        }
        if data.len() != 4 || offset & 3 != 0 {
            return;
        }
        let value = u32::from_le_bytes(data.try_into().expect("4 bytes"));
        // The lock is dropped inside: the handler may run here and now.
        if self.write_register(offset as u32, value) {
            self.irq.trigger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::tests::MockDriver;
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Echo device: one queue; answers every chain with its readable length.
    #[derive(Default)]
    struct Echo {
        activated: Option<u64>,
        resets: usize,
        config: [u8; 8],
    }

    impl VirtioDevice for Echo {
        fn device_id(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            1 << spec::VIRTIO_F_VERSION_1 | 1 << 3
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![8]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = *self.config.get(offset as usize + i).unwrap_or(&0);
            }
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            self.config[offset as usize..][..data.len()].copy_from_slice(data);
        }
        fn activate(&mut self, features: u64) {
            self.activated = Some(features);
        }
        fn reset(&mut self) {
            self.resets += 1;
            self.activated = None;
        }
        fn process_queue(
            &mut self,
            _index: usize,
            queue: &mut Queue,
            mem: &dyn GuestMemory,
        ) -> Result<bool, QueueError> {
            let mut any = false;
            while let Some(chain) = queue.pop(mem)? {
                let len = chain.readable().map(|d| d.len).sum();
                queue.add_used(mem, chain.head, len)?;
                any = true;
            }
            Ok(any)
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Interrupt for Arc<Count> {
        fn trigger(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn rd(t: &MmioTransport<Echo>, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        t.read(reg.into(), &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(t: &MmioTransport<Echo>, reg: u32, v: u32) {
        t.write(reg.into(), &v.to_le_bytes());
    }

    /// Negotiates like Linux's virtio_mmio and sets queue 0 up on `d`'s rings.
    fn bring_up(t: &MmioTransport<Echo>, d: &MockDriver, features: u64) -> u32 {
        use crate::spec::*;
        wr(t, VIRTIO_MMIO_STATUS, 0);
        wr(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        wr(t, VIRTIO_MMIO_STATUS, 3);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
        wr(t, VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_FEATURES_OK);
        if rd(t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            return rd(t, VIRTIO_MMIO_STATUS);
        }
        wr(t, VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_eq!(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_eq!(rd(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 8);
        wr(t, VIRTIO_MMIO_QUEUE_NUM, 8);
        wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, d.desc as u32);
        wr(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, (d.desc >> 32) as u32);
        wr(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, d.avail as u32);
        wr(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (d.avail >> 32) as u32);
        wr(t, VIRTIO_MMIO_QUEUE_USED_LOW, d.used as u32);
        wr(t, VIRTIO_MMIO_QUEUE_USED_HIGH, (d.used >> 32) as u32);
        wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(rd(t, VIRTIO_MMIO_QUEUE_READY), 1);
        wr(t, VIRTIO_MMIO_STATUS, 0xf);
        rd(t, VIRTIO_MMIO_STATUS)
    }

    fn transport() -> (MmioTransport<Echo>, MockDriver, Arc<Count>) {
        let d = MockDriver::new(8);
        let count = Arc::new(Count::default());
        let t = MmioTransport::new(
            Echo::default(),
            Box::new(d.mem.clone()),
            Box::new(count.clone()),
        );
        (t, d, count)
    }

    #[test]
    fn identity_registers() {
        use crate::spec::*;
        let (t, _, _) = transport();
        assert_eq!(rd(&t, VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(rd(&t, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(rd(&t, VIRTIO_MMIO_DEVICE_ID), 42);
        wr(&t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&t, VIRTIO_MMIO_DEVICE_FEATURES), 1);
        wr(&t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&t, VIRTIO_MMIO_DEVICE_FEATURES), 8);
        assert_eq!(rd(&t, VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
        // A queue that does not exist.
        wr(&t, VIRTIO_MMIO_QUEUE_SEL, 5);
        assert_eq!(rd(&t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        // Narrow register reads are zero; config space takes any width.
        let mut b = [0xffu8; 2];
        t.read(0, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(0x102, &[7, 8]);
        let mut b = [0u8; 4];
        t.read(0x100, &mut b);
        assert_eq!(b, [0, 0, 7, 8]);
    }

    #[test]
    fn features_outside_the_offer_or_without_version_1_are_refused() {
        let (t, d, _) = transport();
        let s = bring_up(&t, &d, 1 << 5 | 1 << 32);
        assert_eq!(s & spec::VIRTIO_CONFIG_S_FEATURES_OK, 0);
        let s = bring_up(&t, &d, 1 << 3);
        assert_eq!(s & spec::VIRTIO_CONFIG_S_FEATURES_OK, 0);
        t.with_device(|e| assert_eq!(e.activated, None));
        let s = bring_up(&t, &d, 1 << 3 | 1 << 32);
        assert_eq!(s, 0xf);
        t.with_device(|e| assert_eq!(e.activated, Some(1 << 3 | 1 << 32)));
    }

    #[test]
    fn notify_processes_and_interrupts_then_reset_clears() {
        use crate::spec::*;
        let (t, mut dm, count) = transport();
        assert_eq!(bring_up(&t, &dm, 1 << 32), 0xf);
        // Queue registers are frozen while the queue is live: this is
        // ignored, or the chain below would be read from the wrong place.
        wr(&t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x40);
        let a = dm.alloc(24);
        let head = dm.add_chain(&[(a, 24, false)]);
        wr(&t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(rd(&t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        assert_eq!(dm.used_idx(), 1);
        assert_eq!(dm.used_elem(0), (u32::from(head), 24));
        wr(&t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        assert_eq!(rd(&t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        // Nothing new: no interrupt.
        wr(&t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A broken chain: NEEDS_RESET and a config interrupt.
        dm.write_desc(3, a, 24, 1, 3);
        dm.publish(3);
        wr(&t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_ne!(rd(&t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
        assert_eq!(rd(&t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        wr(&t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(rd(&t, VIRTIO_MMIO_STATUS), 0);
        assert_eq!(rd(&t, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_eq!(rd(&t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        t.with_device(|e| assert!(e.resets >= 1));
    }

    #[test]
    fn host_work_runs_only_on_a_live_queue_and_interrupts() {
        let (t, mut dm, count) = transport();
        let a = dm.alloc(16);
        let head = dm.add_chain(&[(a, 16, true)]);
        let fill = |_: &mut Echo, q: &mut Queue, mem: &dyn GuestMemory| {
            let Some(chain) = q.pop(mem)? else {
                return Ok(false);
            };
            q.add_used(mem, chain.head, 5)?;
            Ok(true)
        };
        // No driver yet: nothing runs.
        assert_eq!(t.run_queue(0, fill), None);
        assert_eq!(bring_up(&t, &dm, 1 << 32), 0xf);
        assert_eq!(t.run_queue(7, fill), None);
        assert_eq!(t.run_queue(0, fill), Some(true));
        assert_eq!(dm.used_elem(0), (u32::from(head), 5));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            rd(&t, spec::VIRTIO_MMIO_INTERRUPT_STATUS),
            spec::VIRTIO_MMIO_INT_VRING
        );
        // Nothing available: no interrupt.
        assert_eq!(t.run_queue(0, fill), Some(false));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
