//! Synthetic timelines with known answers for the unit tests of the summary and the trace
//! round trip: a builder that names tasks once, and the workload of issue 10 (a thread
//! sleeping 30 ms then 10 ms in a loop, one spinning, one woken through a pipe by another).
//! `tests/trace_file.rs` compiles this file too (it names the model as `crate::trace::model`
//! for that), so the Python check and the unit tests share one set of answers.

use std::collections::HashMap;

use crate::trace::model::{
    CpuSample, Frame, ProcessInfo, SchedEvent, StackId, Switch, Task, TaskState, ThreadInfo,
    Timeline, Waking,
};

pub const PID: u32 = 100;
pub const MS: u64 = 1_000_000;
pub const US: u64 = 1_000;

pub struct Scenario {
    pub t: Timeline,
    tasks: HashMap<u32, (u32, String)>,
}

impl Scenario {
    /// A window starting at `start_ns` with process `PID` ("app").
    pub fn new(start_ns: u64) -> Self {
        let mut s = Scenario {
            t: Timeline {
                start_ns,
                end_ns: start_ns,
                sample_period_ns: 10_101_010,
                ..Timeline::default()
            },
            tasks: HashMap::new(),
        };
        s.t.processes.push(ProcessInfo {
            pid: PID,
            ppid: 1,
            name: "app".into(),
            cmdline: vec!["/usr/bin/app".into(), "--serve".into()],
        });
        s.tasks.insert(0, (0, "swapper/0".into()));
        s
    }

    /// A thread of the target process, declared in the thread list.
    pub fn thread(&mut self, tid: u32, name: &str) {
        self.t.threads.push(ThreadInfo {
            tid,
            pid: PID,
            name: name.into(),
        });
        self.tasks.insert(tid, (PID, name.into()));
    }

    /// A task of another process (the other side of a switch), not declared.
    pub fn other_task(&mut self, tid: u32, pid: u32, comm: &str) {
        self.tasks.insert(tid, (pid, comm.into()));
    }

    /// A thread of the target that is only seen in events (named by its comm).
    pub fn undeclared(&mut self, tid: u32, pid: u32, comm: &str) {
        self.tasks.insert(tid, (pid, comm.into()));
    }

    /// User frames of `/usr/bin/app`, leaf first, under a kernel frame.
    pub fn stack(&mut self, functions: &[&str]) -> StackId {
        let mut frames = vec![Frame {
            function: "schedule".into(),
            file: String::new(),
            line: 0,
            module: "[kernel.kallsyms]".into(),
            rel_pc: 0xffff_ffff_8100_0000,
            kernel: true,
        }];
        for (i, f) in functions.iter().enumerate() {
            frames.push(Frame {
                function: (*f).into(),
                file: format!("/src/app/{f}.rs"),
                line: 10 + i as u32,
                module: "/usr/bin/app".into(),
                rel_pc: 0x1000 + 0x10 * i as u64,
                kernel: false,
            });
        }
        self.t.stacks.intern(frames)
    }

    pub fn task(&self, tid: u32) -> Task {
        let (pid, comm) = self
            .tasks
            .get(&tid)
            .cloned()
            .unwrap_or((0, format!("task{tid}")));
        Task {
            tid,
            pid,
            comm,
            prio: 120,
        }
    }

    pub fn switch(
        &mut self,
        ts: u64,
        cpu: u32,
        prev: u32,
        state: TaskState,
        stack: Option<StackId>,
        next: u32,
    ) {
        let e = SchedEvent::Switch(Switch {
            ts,
            cpu,
            prev: self.task(prev),
            prev_state: state,
            next: self.task(next),
            prev_stack: stack,
        });
        self.t.events.push(e);
    }

    /// `tid` gets CPU `cpu` from the idle task.
    pub fn run(&mut self, ts: u64, cpu: u32, tid: u32) {
        self.switch(ts, cpu, 0, TaskState::Runnable, None, tid);
    }

    /// `tid` leaves CPU `cpu` to the idle task, sleeping (S) at `stack`.
    pub fn sleep(&mut self, ts: u64, cpu: u32, tid: u32, stack: StackId) {
        self.switch(ts, cpu, tid, TaskState::Sleeping, Some(stack), 0);
    }

    pub fn wake(&mut self, ts: u64, cpu: u32, waker: u32, wakee: u32, target_cpu: u32) {
        let waker_pid = self.task(waker).pid;
        let e = SchedEvent::Waking(Waking {
            ts,
            cpu,
            waker_tid: waker,
            waker_pid,
            wakee: self.task(wakee),
            target_cpu,
        });
        self.t.events.push(e);
    }

    pub fn sample(&mut self, ts: u64, cpu: u32, tid: u32, stack: StackId) {
        let pid = self.task(tid).pid;
        self.t.samples.push(CpuSample {
            ts,
            cpu,
            pid,
            tid,
            stack,
        });
    }

    /// Sorts events by time (the builder appends per thread) and closes the window.
    pub fn finish(mut self, end_ns: u64) -> Timeline {
        self.t.events.sort_by_key(|e| (e.ts(), e.cpu()));
        self.t.end_ns = end_ns;
        self.t
    }
}

/// Thread ids of [`workload`].
pub const SLEEPER: u32 = 101;
pub const SPINNER: u32 = 102;
pub const READER: u32 = 103;
pub const WRITER: u32 = 104;
pub const KWORKER: u32 = 7;

/// The answers [`workload`] was built with.
pub struct WorkloadAnswers {
    pub sleeper_sleeping_ns: u64,
    pub reader_sleeping_ns: u64,
    pub spinner_runnable_ns: u64,
    pub latencies: u64,
}

/// `rounds` rounds of 50 ms each, from `start`:
/// - the sleeper (CPU 0) runs 1 ms, sleeps 30 ms in `sleep_long`, wakes (timer: the idle
///   task wakes it), waits 50 µs, runs 1 ms, sleeps 10 ms in `sleep_short`, waits 50 µs, then
///   idles the rest of the round as a 7.9 ms sleep in `idle_wait`;
/// - the spinner (CPU 1) runs from before the window, preempted once per round for 20 µs by a
///   kworker, with a CPU sample every 10 ms;
/// - the reader (CPU 3) blocks in `pipe_read` until the writer (CPU 2) writes at 20 ms into
///   the round; it runs 5 µs after the wake-up for 100 µs and blocks again.
pub fn workload(start: u64, rounds: u64) -> (Timeline, WorkloadAnswers) {
    let mut s = Scenario::new(start);
    s.thread(SLEEPER, "sleeper");
    s.thread(SPINNER, "spinner");
    s.thread(READER, "reader");
    s.thread(WRITER, "writer");
    s.other_task(KWORKER, 7, "kworker/1:1");
    let long = s.stack(&["std::thread::sleep", "app::sleeper"]);
    let short = s.stack(&["std::thread::sleep", "app::sleeper_short"]);
    let idle = s.stack(&["std::thread::sleep", "app::idle_wait"]);
    let pipe = s.stack(&["read", "app::pipe_reader"]);
    let spin = s.stack(&["app::spin"]);
    let write = s.stack(&["write", "app::pipe_writer"]);
    let timer = s.stack(&["clock_nanosleep", "app::pipe_writer"]);
    let round = 50 * MS;
    let mut answers = WorkloadAnswers {
        sleeper_sleeping_ns: 0,
        reader_sleeping_ns: 0,
        spinner_runnable_ns: 0,
        latencies: 0,
    };
    // The reader blocks once before the first round.
    s.sleep(start + 10 * US, 3, READER, pipe);
    let mut reader_blocked_since = start + 10 * US;
    // The sleeper starts on its CPU at the window start.
    s.run(start, 0, SLEEPER);
    for r in 0..rounds {
        let t0 = start + r * round;
        // Sleeper.
        s.sleep(t0 + MS, 0, SLEEPER, long);
        s.wake(t0 + 31 * MS, 0, 0, SLEEPER, 0);
        s.run(t0 + 31 * MS + 50 * US, 0, SLEEPER);
        s.sleep(t0 + 32 * MS + 50 * US, 0, SLEEPER, short);
        s.wake(t0 + 42 * MS + 50 * US, 0, 0, SLEEPER, 0);
        s.run(t0 + 42 * MS + 100 * US, 0, SLEEPER);
        s.sleep(t0 + 42 * MS + 100 * US, 0, SLEEPER, idle);
        s.wake(t0 + 50 * MS, 0, 0, SLEEPER, 0);
        s.run(t0 + 50 * MS, 0, SLEEPER);
        answers.sleeper_sleeping_ns += 30 * MS + 10 * MS + (50 * MS - 42 * MS - 100 * US);
        answers.latencies += 3;
        // Spinner: preempted at 5 ms into the round.
        s.switch(t0 + 5 * MS, 1, SPINNER, TaskState::Runnable, None, KWORKER);
        s.switch(
            t0 + 5 * MS + 20 * US,
            1,
            KWORKER,
            TaskState::Sleeping,
            None,
            SPINNER,
        );
        answers.spinner_runnable_ns += 20 * US;
        answers.latencies += 1;
        for k in 0..5 {
            s.sample(t0 + k * 10 * MS + 3 * MS, 1, SPINNER, spin);
        }
        // Pipe: a timer wakes the writer at 19 ms; it runs 1 ms and writes at 20 ms.
        s.wake(t0 + 19 * MS, 2, 0, WRITER, 2);
        s.run(t0 + 19 * MS, 2, WRITER);
        answers.latencies += 1;
        s.sample(t0 + 19 * MS + 500 * US, 2, WRITER, write);
        s.wake(t0 + 20 * MS, 2, WRITER, READER, 3);
        s.sleep(t0 + 20 * MS, 2, WRITER, timer);
        s.run(t0 + 20 * MS + 5 * US, 3, READER);
        answers.reader_sleeping_ns += t0 + 20 * MS - reader_blocked_since;
        answers.latencies += 1;
        s.sleep(t0 + 20 * MS + 105 * US, 3, READER, pipe);
        reader_blocked_since = t0 + 20 * MS + 105 * US;
    }
    let end = start + rounds * round;
    // Still blocked in the pipe at the end.
    answers.reader_sleeping_ns += end - reader_blocked_since;
    (s.finish(end), answers)
}
