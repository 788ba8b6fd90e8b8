//! The timeline `profiler trace` records: scheduler events and CPU samples of the traced
//! threads, with symbolized stacks stored once in a [`StackTable`]. The recording session
//! builds it; the Perfetto writer and the summary read it; the Perfetto reader rebuilds it from
//! a trace file. Plain data, no I/O.
//!
//! Units: every timestamp is CLOCK_BOOTTIME in nanoseconds (`bpf_ktime_get_boot_ns()`, the
//! clock Perfetto assumes by default); durations are nanoseconds; CPUs are kernel CPU numbers;
//! `tid` is the kernel task id (`task->pid`) and `pid` the process id (`task->tgid`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

/// Everything recorded in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Start of the recording window (ns, BOOTTIME). Events before it are not expected.
    pub start_ns: u64,
    /// End of the recording window (ns, BOOTTIME). Threads still blocked or running then are
    /// accounted up to here.
    pub end_ns: u64,
    /// The traced processes (the target set). The summary covers their threads only; other
    /// tasks appear in events as the other side of a switch or as wakers.
    pub processes: Vec<ProcessInfo>,
    /// Names of threads known from `/proc` or fork events. Threads seen only in events are
    /// named from their `comm` there; this list need not be complete.
    pub threads: Vec<ThreadInfo>,
    /// Scheduler events in time order. Events with the same timestamp keep their order per CPU
    /// (the order across CPUs at one timestamp is not meaningful and the summary does not use it).
    pub events: Vec<SchedEvent>,
    /// CPU samples, in any order.
    pub samples: Vec<CpuSample>,
    /// CPU time one sample stands for (the cpu-clock period, 1e9 / Hz); 0 without sampling.
    pub sample_period_ns: u64,
    /// The stacks that events and samples refer to.
    pub stacks: StackTable,
    /// What the kernel could not deliver. Counted, written into the trace, shown in the summary.
    pub losses: Losses,
    /// Values over time (counter tracks), e.g. the heap's allocation rate and live bytes.
    pub counters: Vec<Counter>,
}

/// A value over time: one counter track in Perfetto.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counter {
    pub name: String,
    pub unit: CounterUnit,
    /// (timestamp ns, value), in time order.
    pub points: Vec<(u64, f64)>,
}

/// What a counter's values are (Perfetto shows bytes in KiB/MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterUnit {
    Count,
    Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Scheduler events lost because a ring buffer was full, by the CPU that lost them. A
    /// recorder with one shared buffer files its count under the CPU that noticed, or CPU 0.
    pub sched_events_by_cpu: BTreeMap<u32, u64>,
    /// CPU samples lost in the kernel.
    pub samples: u64,
}

impl Losses {
    pub fn sched_events(&self) -> u64 {
        self.sched_events_by_cpu.values().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// 0 when unknown.
    pub ppid: u32,
    /// `comm` of the main thread.
    pub name: String,
    /// `/proc/PID/cmdline` split on NUL; empty when unreadable (kernel threads, zombies).
    pub cmdline: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: u32,
    pub pid: u32,
    pub name: String,
}

/// One task as a scheduler event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub tid: u32,
    pub pid: u32,
    /// `comm` at the time of the event (at most 15 bytes in the kernel).
    pub comm: String,
    /// Kernel priority (`task->prio`: 100..139 for normal tasks, 120 = nice 0).
    pub prio: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedEvent {
    Switch(Switch),
    Waking(Waking),
}

impl SchedEvent {
    pub fn ts(&self) -> u64 {
        match self {
            SchedEvent::Switch(s) => s.ts,
            SchedEvent::Waking(w) => w.ts,
        }
    }

    pub fn cpu(&self) -> u32 {
        match self {
            SchedEvent::Switch(s) => s.cpu,
            SchedEvent::Waking(w) => w.cpu,
        }
    }
}

/// `sched_switch`: `prev` leaves `cpu` in `prev_state`, `next` starts running there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub ts: u64,
    pub cpu: u32,
    pub prev: Task,
    pub prev_state: TaskState,
    pub next: Task,
    /// Where `prev` blocked: its stack at switch-out, leaf first (user frames, possibly
    /// kernel frames too). None when not captured (preemptions, a full stack map).
    pub prev_stack: Option<StackId>,
}

/// `sched_waking`: `waker` makes `wakee` runnable. Feed `sched_wakeup_new` (a new thread's
/// first wake-up) as one too: Perfetto draws Runnable and the waker only from `sched_waking`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waking {
    pub ts: u64,
    /// The CPU the waker ran on.
    pub cpu: u32,
    /// The task that ran the wake-up (0 = the idle task, e.g. a timer or an interrupt).
    pub waker_tid: u32,
    pub waker_pid: u32,
    pub wakee: Task,
    /// The CPU the wakee is queued on.
    pub target_cpu: u32,
}

/// The state a task leaves the CPU in, as `sched_switch` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TaskState {
    /// Still runnable: preempted or yielded (R).
    Runnable,
    /// Interruptible sleep (S): waiting for an event (futex, poll, sleep, pipe).
    Sleeping,
    /// Uninterruptible sleep (D): usually I/O, page faults or kernel locks.
    Uninterruptible,
    /// Stopped or traced (T, t).
    Stopped,
    /// Exiting (X, Z, TASK_DEAD): the thread is gone after this switch.
    Dead,
    /// Kernel state bits not covered above (e.g. TASK_PARKED), kept as reported.
    Other(u16),
}

// Kernel task state bits (include/linux/sched.h); the low ones mean the same on every kernel.
const TASK_INTERRUPTIBLE: u32 = 0x1;
const TASK_UNINTERRUPTIBLE: u32 = 0x2;
const TASK_STOPPED_OR_TRACED: u32 = 0x4 | 0x8;
const EXIT_DEAD: u32 = 0x10;
const EXIT_ZOMBIE: u32 = 0x20;
const TASK_DEAD: u32 = 0x80;

impl TaskState {
    /// From the `sched_switch` tracepoint's arguments: `preempt` and `prev_state` (the raw
    /// `prev->__state`, as `tp_btf/sched_switch` passes it since Linux 5.18).
    pub fn from_kernel(preempt: bool, prev_state: u32) -> Self {
        if preempt || prev_state == 0 {
            TaskState::Runnable
        } else if prev_state & (EXIT_DEAD | EXIT_ZOMBIE | TASK_DEAD) != 0 {
            TaskState::Dead
        } else if prev_state & TASK_UNINTERRUPTIBLE != 0 {
            // Includes TASK_KILLABLE and TASK_IDLE (uninterruptible | noload).
            TaskState::Uninterruptible
        } else if prev_state & TASK_INTERRUPTIBLE != 0 {
            TaskState::Sleeping
        } else if prev_state & TASK_STOPPED_OR_TRACED != 0 {
            TaskState::Stopped
        } else {
            TaskState::Other(prev_state as u16)
        }
    }

    /// The ftrace `prev_state` value. Only bits below 0x40 are written for the known states,
    /// because Perfetto decodes higher bits per kernel version and our traces carry none.
    pub fn to_ftrace(self) -> i64 {
        match self {
            TaskState::Runnable => 0,
            TaskState::Sleeping => TASK_INTERRUPTIBLE as i64,
            TaskState::Uninterruptible => TASK_UNINTERRUPTIBLE as i64,
            TaskState::Stopped => 0x4,
            TaskState::Dead => EXIT_DEAD as i64,
            TaskState::Other(bits) => bits as i64,
        }
    }

    /// Inverse of [`TaskState::to_ftrace`]; other writers' values map to the closest state.
    pub fn from_ftrace(v: i64) -> Self {
        match v {
            0 => TaskState::Runnable,
            0x1 => TaskState::Sleeping,
            0x2 => TaskState::Uninterruptible,
            0x4 => TaskState::Stopped,
            0x10 => TaskState::Dead,
            v if (0..=u16::MAX as i64).contains(&v) => TaskState::Other(v as u16),
            _ => TaskState::Other(u16::MAX),
        }
    }

    /// The letter `ps` and Perfetto show.
    pub fn letter(self) -> &'static str {
        match self {
            TaskState::Runnable => "R",
            TaskState::Sleeping => "S",
            TaskState::Uninterruptible => "D",
            TaskState::Stopped => "T",
            TaskState::Dead => "X",
            TaskState::Other(_) => "?",
        }
    }
}

/// A CPU sample: `tid` was on `cpu` at `ts` running `stack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    pub ts: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub stack: StackId,
}

/// One symbolized frame. Inlined functions are frames of their own with the same `rel_pc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Frame {
    /// Demangled name; `module+0xoffset` when the address did not symbolize.
    pub function: String,
    /// Source file, empty when unknown.
    pub file: String,
    /// Source line, 0 when unknown.
    pub line: u32,
    /// Path of the mapped object (`[kernel.kallsyms]` for the kernel), empty when unknown.
    pub module: String,
    /// Address relative to the module (file offset); 0 when there is no module.
    pub rel_pc: u64,
    pub kernel: bool,
}

/// Index of a stack in a [`StackTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackId(pub u32);

/// Stacks stored once: samples and switch-outs repeat the same few hundred stacks.
#[derive(Debug, Clone, Default)]
pub struct StackTable {
    stacks: Vec<Vec<Frame>>,
    /// Content hash to the ids with that hash (collisions are compared in full).
    by_hash: HashMap<u64, Vec<StackId>>,
}

impl StackTable {
    /// The id of `frames` (leaf first), adding it if new. A frame without a module gets
    /// `rel_pc` 0, since an offset into nothing means nothing (and Perfetto drops it).
    pub fn intern(&mut self, mut frames: Vec<Frame>) -> StackId {
        for f in &mut frames {
            if f.module.is_empty() {
                f.rel_pc = 0;
            }
        }
        let mut hasher = DefaultHasher::new();
        frames.hash(&mut hasher);
        let ids = self.by_hash.entry(hasher.finish()).or_default();
        if let Some(id) = ids.iter().find(|id| self.stacks[id.0 as usize] == frames) {
            return *id;
        }
        let id = StackId(self.stacks.len() as u32);
        self.stacks.push(frames);
        ids.push(id);
        id
    }

    /// The frames of `id`, leaf first; empty for an id from another table.
    pub fn get(&self, id: StackId) -> &[Frame] {
        self.stacks.get(id.0 as usize).map_or(&[], |s| s.as_slice())
    }

    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }
}

/// Two tables are equal when they hold the same stacks under the same ids.
impl PartialEq for StackTable {
    fn eq(&self, other: &Self) -> bool {
        self.stacks == other.stacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.into(),
            file: String::new(),
            line: 0,
            module: String::new(),
            rel_pc: 0x10,
            kernel: false,
        }
    }

    #[test]
    fn stacks_are_stored_once() {
        let mut t = StackTable::default();
        let a = t.intern(vec![frame("a"), frame("main")]);
        let b = t.intern(vec![frame("b"), frame("main")]);
        assert_ne!(a, b);
        assert_eq!(t.intern(vec![frame("a"), frame("main")]), a);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(a)[0].function, "a");
        // Without a module the offset is dropped.
        assert_eq!(t.get(a)[0].rel_pc, 0);
        assert!(t.get(StackId(9)).is_empty());
    }

    #[test]
    fn task_states_from_the_kernel_and_back() {
        assert_eq!(TaskState::from_kernel(true, 1), TaskState::Runnable);
        assert_eq!(TaskState::from_kernel(false, 0), TaskState::Runnable);
        assert_eq!(TaskState::from_kernel(false, 1), TaskState::Sleeping);
        assert_eq!(
            TaskState::from_kernel(false, 0x102),
            TaskState::Uninterruptible
        );
        assert_eq!(
            TaskState::from_kernel(false, 0x402),
            TaskState::Uninterruptible
        );
        assert_eq!(TaskState::from_kernel(false, 0x80), TaskState::Dead);
        assert_eq!(TaskState::from_kernel(false, 0x8), TaskState::Stopped);
        assert_eq!(TaskState::from_kernel(false, 0x40), TaskState::Other(0x40));
        for s in [
            TaskState::Runnable,
            TaskState::Sleeping,
            TaskState::Uninterruptible,
            TaskState::Stopped,
            TaskState::Dead,
            TaskState::Other(0x40),
        ] {
            assert_eq!(TaskState::from_ftrace(s.to_ftrace()), s);
        }
    }
}
