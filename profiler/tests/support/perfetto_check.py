"""Reads a trace written by `profiler trace` with Perfetto's own Python protos and prints, as
JSON, what tests/trace_file.rs checks: packet kinds per sequence, the sample timebases, thread
names, per-thread scheduler facts derived here independently of the Rust reader (sleeping time
from sched_switch S to the next wake-up or switch-in, wakers), callstacks resolved through the
interned data (by leaf function, and by any function on the stack), counter tracks, and the
loss counters.

Usage: python3 perfetto_check.py TRACE_FILE
Needs: pip install perfetto protobuf (perfetto.protos.perfetto.trace.perfetto_trace_pb2).
"""

import collections
import json
import sys

try:
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
except ImportError as e:
    print(f"MISSING-PERFETTO: {e}", file=sys.stderr)
    sys.exit(3)


def main(path):
    trace = pb.Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())

    kinds = collections.Counter()
    seq_kinds = collections.defaultdict(collections.Counter)
    timebases = {}
    names = {}
    tgids = {}
    processes = {}
    events = []  # (ts, cpu, kind, fields)
    unsorted_bundles = 0
    dropped = collections.defaultdict(dict)
    records_lost = 0
    service = {}
    # Interning per sequence, as Perfetto resolves it.
    interned = collections.defaultdict(lambda: collections.defaultdict(dict))
    samples = collections.defaultdict(list)  # seq -> [(tid, [function root..leaf])]
    unresolved = 0
    frame_kinds = collections.Counter()
    tracks = {}  # counter track uuid -> name
    counters = collections.defaultdict(list)  # name -> values
    counter_units = {}

    for p in trace.packet:
        kind = p.WhichOneof("data") or "none"
        kinds[kind] += 1
        seq = p.trusted_packet_sequence_id
        seq_kinds[seq][kind] += 1
        if p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
            interned[seq].clear()
        if p.HasField("trace_packet_defaults"):
            tb = p.trace_packet_defaults.perf_sample_defaults.timebase
            timebases[seq] = {
                "name": tb.name,
                "counter": tb.counter if tb.HasField("counter") else None,
                "tracepoint": tb.tracepoint.name if tb.HasField("tracepoint") else None,
                "period": tb.period if tb.HasField("period") else None,
            }
        if p.HasField("interned_data"):
            d = p.interned_data
            t = interned[seq]
            for s in d.function_names:
                t["function"][s.iid] = s.str.decode()
            for s in d.source_paths:
                t["source"][s.iid] = s.str.decode()
            for s in d.mapping_paths:
                t["mapping_path"][s.iid] = s.str.decode()
            for m in d.mappings:
                t["mapping"][m.iid] = "/".join(t["mapping_path"][i] for i in m.path_string_ids)
            for fr in d.frames:
                if fr.function_name_id not in t["function"]:
                    unresolved += 1
                if fr.mapping_id and fr.mapping_id not in t["mapping"]:
                    unresolved += 1
                frame_kinds[pb.Frame.Kind.Name(fr.kind)] += 1
                t["frame"][fr.iid] = (t["function"].get(fr.function_name_id, "?"), fr.kind)
            for cs in d.callstacks:
                for fid in cs.frame_ids:
                    if fid not in t["frame"]:
                        unresolved += 1
                t["callstack"][cs.iid] = [t["frame"].get(f, ("?", 0)) for f in cs.frame_ids]
        if kind == "process_tree":
            for th in p.process_tree.threads:
                tgids.setdefault(th.tid, th.tgid)
                if th.HasField("name"):
                    names.setdefault(str(th.tid), th.name)
            for pr in p.process_tree.processes:
                processes[str(pr.pid)] = list(pr.cmdline)
        elif kind == "ftrace_events":
            b = p.ftrace_events
            last = 0
            for ev in b.event:
                if ev.timestamp < last:
                    unsorted_bundles += 1
                last = ev.timestamp
                which = ev.WhichOneof("event")
                if which == "sched_switch":
                    s = ev.sched_switch
                    events.append((ev.timestamp, b.cpu, "switch",
                                   (s.prev_pid, s.prev_state, s.next_pid, s.prev_comm, s.next_comm)))
                elif which in ("sched_waking", "sched_wakeup_new"):
                    w = getattr(ev, which)
                    events.append((ev.timestamp, b.cpu, "waking", (ev.pid, w.pid, w.target_cpu)))
        elif kind == "perf_sample":
            s = p.perf_sample
            if s.HasField("kernel_records_lost"):
                records_lost += s.kernel_records_lost
            else:
                stack = interned[seq]["callstack"].get(s.callstack_iid) if s.callstack_iid else []
                if stack is None:
                    unresolved += 1
                    stack = []
                samples[seq].append((s.tid, stack))
        elif kind == "ftrace_stats":
            phase = pb.FtraceStats.Phase.Name(p.ftrace_stats.phase)
            for c in p.ftrace_stats.cpu_stats:
                dropped[phase][str(c.cpu)] = c.dropped_events
        elif kind == "track_descriptor":
            d = p.track_descriptor
            if d.HasField("counter"):
                tracks[d.uuid] = d.name
                counter_units[d.name] = pb.CounterDescriptor.Unit.Name(d.counter.unit)
        elif kind == "track_event":
            e = p.track_event
            if e.type == pb.TrackEvent.TYPE_COUNTER and e.track_uuid in tracks:
                value = e.double_counter_value if e.HasField("double_counter_value") else e.counter_value
                counters[tracks[e.track_uuid]].append(value)
            else:
                unresolved += 1
        elif kind == "service_event":
            service[p.service_event.WhichOneof("event_type")] = p.timestamp

    # Sleeping (S) time per tid: from switch-out in S to the next waking or switch-in of it;
    # each interval is also listed, for checks against known sleep lengths.
    events.sort(key=lambda e: (e[0], e[1]))
    end = service.get("tracing_disabled", events[-1][0] if events else 0)
    sleep_since = {}
    sleeping = collections.Counter()
    sleep_intervals = collections.defaultdict(list)
    wakers = collections.Counter()
    switches = collections.Counter()
    for ts, cpu, kind, f in events:
        if kind == "switch":
            prev, state, nxt = f[0], f[1], f[2]
            switches[prev] += 1
            if state == 1:
                sleep_since[prev] = ts
            if nxt in sleep_since:
                d = ts - sleep_since.pop(nxt)
                sleeping[nxt] += d
                sleep_intervals[nxt].append(d)
        else:
            waker, wakee = f[0], f[1]
            wakers[f"{waker}->{wakee}"] += 1
            if wakee in sleep_since:
                d = ts - sleep_since.pop(wakee)
                sleeping[wakee] += d
                sleep_intervals[wakee].append(d)
    for tid, since in sleep_since.items():
        sleeping[tid] += end - since

    leaf_by_seq = {}
    function_by_seq = {}
    for seq, ss in samples.items():
        c = collections.Counter()
        anywhere = collections.Counter()
        for tid, stack in ss:
            # Callstacks list frames root first: the leaf user frame is the last non-kernel one.
            user = [name for name, kind in stack if kind != pb.Frame.KIND_KERNEL]
            c[f"{tid}:{user[-1] if user else ''}"] += 1
            for name in set(name for name, _ in stack):
                anywhere[f"{tid}:{name}"] += 1
        leaf_by_seq[str(seq)] = c
        function_by_seq[str(seq)] = anywhere

    print(json.dumps({
        "packets": len(trace.packet),
        "kinds": kinds,
        "sequences": {str(k): v for k, v in seq_kinds.items()},
        "timebases": {str(k): v for k, v in timebases.items()},
        "thread_names": names,
        "tgids": {str(k): v for k, v in tgids.items()},
        "processes": processes,
        "sched_events": len(events),
        "unsorted_bundles": unsorted_bundles,
        "switches": {str(k): v for k, v in switches.items()},
        "sleeping_ns": {str(k): v for k, v in sleeping.items()},
        "sleep_intervals_ns": {str(k): v for k, v in sleep_intervals.items()},
        "samples_total": {str(k): len(v) for k, v in samples.items()},
        "wakers": wakers,
        "samples_by_leaf": leaf_by_seq,
        "samples_with_function": function_by_seq,
        "frame_kinds": frame_kinds,
        "unresolved": unresolved,
        "dropped_events": dropped,
        "kernel_records_lost": records_lost,
        "service": service,
        "counters": counters,
        "counter_units": counter_units,
    }, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
