//! The fault schedule of a run: timed fault events drawn from the seed, as data, so that
//! `shrink` can drop events and shorten windows and a schedule file replays the result.
//!
//! Swarm testing: the seed first decides which fault kinds are on in this run and how often
//! each strikes, then draws the events. A run with few kinds on goes deep into them (many
//! crashes, say, without partitions to mask them); across seeds every combination comes up.
//!
//! One event per line, `<at>ms <kind> key=value…`, e.g. `1200ms crash member=m2 for=800ms`
//! ([`Event`]'s `Display` and `FromStr` are inverse).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The kinds of fault, by their names on the command line (`--faults crash,partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Members split in two groups that cannot talk.
    Partition,
    /// One-way cuts: a link, or all of a member's incoming or outgoing traffic.
    OneWay,
    /// The current leader cut off from everyone.
    IsolateLeader,
    /// Slow, lossy network: message delay and packet loss.
    Network,
    /// A member's process killed (and half the time its machine's power cut) and restarted.
    Crash,
    /// A member's process stopped and resumed (a GC pause, a VM migration).
    Pause,
    /// A member's clock jumps forward.
    Clock,
    /// Power fails at the k-th file-system operation of a member.
    Power,
    /// A member's fsync fails: it must stop, and is restarted from its disk.
    Fsync,
    /// A bit flips in synced data of an old WAL segment: the member must refuse to start.
    Corrupt,
    /// Leadership moved on purpose (Maintenance.MoveLeader).
    MoveLeader,
    /// Membership changes: a learner added (the spare member `m<members+1>`, or a removed
    /// member's slot again, with a fresh disk) and started to join, promoted, a member removed
    /// (its process must stop).
    Membership,
    /// The KV history compacted at a recent revision.
    Compact,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::IsolateLeader,
        FaultKind::Network,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Clock,
        FaultKind::Power,
        FaultKind::Fsync,
        FaultKind::Corrupt,
        FaultKind::MoveLeader,
        FaultKind::Membership,
        FaultKind::Compact,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Network => "network",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Power => "power",
            FaultKind::Fsync => "fsync",
            FaultKind::Corrupt => "corrupt",
            FaultKind::MoveLeader => "move-leader",
            FaultKind::Membership => "membership",
            FaultKind::Compact => "compact",
        }
    }

    /// `all`, `none`, or a comma-separated list of names.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        match list {
            "all" => return Ok(FaultKind::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        list.split(',')
            .map(|name| {
                FaultKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
                    let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    format!("unknown fault kind {name:?} (known: {}, all, none)", names.join(", "))
                })
            })
            .collect()
    }
}

/// One fault. Members are indexes (0 is `m1`); `for_ms` is how long until it heals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Partition {
        side: Vec<usize>,
        for_ms: u64,
    },
    CutLink {
        from: usize,
        to: usize,
        for_ms: u64,
    },
    ClogIn {
        member: usize,
        for_ms: u64,
    },
    ClogOut {
        member: usize,
        for_ms: u64,
    },
    IsolateLeader {
        for_ms: u64,
    },
    Network {
        latency_ms_max: u64,
        loss_permille: u64,
        for_ms: u64,
    },
    /// `power_loss`: the machine's power is cut too (unsynced data lost or torn), not only the
    /// process killed.
    Crash {
        member: usize,
        power_loss: bool,
        for_ms: u64,
    },
    Pause {
        member: usize,
        for_ms: u64,
    },
    ClockJump {
        member: usize,
        by_ms: u64,
    },
    /// The power fails at the `after_ops`-th file-system operation from now; the member stays
    /// down `for_ms` after that.
    PowerFailure {
        member: usize,
        after_ops: u64,
        for_ms: u64,
    },
    /// The member's next sync fails; it stays down `for_ms` after it stopped.
    SyncFailure {
        member: usize,
        for_ms: u64,
    },
    CorruptWal {
        member: usize,
    },
    MoveLeader {
        to: usize,
    },
    /// MemberRemove; the removed process must stop, and stop again when restarted from its data.
    RemoveMember {
        member: usize,
    },
    /// MemberAdd as a learner of slot `member`'s peer URL; the slot's node starts with a fresh
    /// disk and `--initial-cluster-state existing`. Slot `members` (one past the founders) is the
    /// spare; a founder's slot can be added only once it was removed.
    AddMember {
        member: usize,
    },
    /// MemberPromote of slot `member`'s learner, retried while it is not in sync.
    PromoteMember {
        member: usize,
    },
    /// Compact at `back` revisions before the current one.
    Compact {
        back: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::CutLink { .. } | Fault::ClogIn { .. } | Fault::ClogOut { .. } => FaultKind::OneWay,
            Fault::IsolateLeader { .. } => FaultKind::IsolateLeader,
            Fault::Network { .. } => FaultKind::Network,
            Fault::Crash { .. } => FaultKind::Crash,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::ClockJump { .. } => FaultKind::Clock,
            Fault::PowerFailure { .. } => FaultKind::Power,
            Fault::SyncFailure { .. } => FaultKind::Fsync,
            Fault::CorruptWal { .. } => FaultKind::Corrupt,
            Fault::MoveLeader { .. } => FaultKind::MoveLeader,
            Fault::RemoveMember { .. } | Fault::AddMember { .. } | Fault::PromoteMember { .. } => FaultKind::Membership,
            Fault::Compact { .. } => FaultKind::Compact,
        }
    }

    /// The healing window, for faults that have one.
    pub fn window_ms(&mut self) -> Option<&mut u64> {
        match self {
            Fault::Partition { for_ms, .. }
            | Fault::CutLink { for_ms, .. }
            | Fault::ClogIn { for_ms, .. }
            | Fault::ClogOut { for_ms, .. }
            | Fault::IsolateLeader { for_ms }
            | Fault::Network { for_ms, .. }
            | Fault::Crash { for_ms, .. }
            | Fault::Pause { for_ms, .. }
            | Fault::PowerFailure { for_ms, .. }
            | Fault::SyncFailure { for_ms, .. } => Some(for_ms),
            Fault::ClockJump { .. }
            | Fault::CorruptWal { .. }
            | Fault::MoveLeader { .. }
            | Fault::RemoveMember { .. }
            | Fault::AddMember { .. }
            | Fault::PromoteMember { .. }
            | Fault::Compact { .. } => None,
        }
    }

    /// The member whose process the fault stops, if any: such faults never overlap on one member.
    fn process_member(&self) -> Option<usize> {
        match self {
            Fault::Crash { member, .. }
            | Fault::Pause { member, .. }
            | Fault::PowerFailure { member, .. }
            | Fault::SyncFailure { member, .. }
            | Fault::CorruptWal { member }
            | Fault::RemoveMember { member } => Some(*member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub fault: Fault,
}

fn member_name(i: usize) -> String {
    format!("m{}", i + 1)
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms {}", self.at_ms, self.fault.kind().name())?;
        let m = member_name;
        match &self.fault {
            Fault::Partition { side, for_ms } => {
                let side: Vec<String> = side.iter().map(|&i| m(i)).collect();
                write!(f, " side={} for={for_ms}ms", side.join(","))
            }
            Fault::CutLink { from, to, for_ms } => write!(f, " from={} to={} for={for_ms}ms", m(*from), m(*to)),
            Fault::ClogIn { member, for_ms } => write!(f, " in={} for={for_ms}ms", m(*member)),
            Fault::ClogOut { member, for_ms } => write!(f, " out={} for={for_ms}ms", m(*member)),
            Fault::IsolateLeader { for_ms } => write!(f, " for={for_ms}ms"),
            Fault::Network { latency_ms_max, loss_permille, for_ms } => {
                write!(f, " latency-max={latency_ms_max}ms loss-permille={loss_permille} for={for_ms}ms")
            }
            Fault::Crash { member, power_loss, for_ms } => {
                write!(f, " member={} power-loss={power_loss} for={for_ms}ms", m(*member))
            }
            Fault::Pause { member, for_ms } => write!(f, " member={} for={for_ms}ms", m(*member)),
            Fault::ClockJump { member, by_ms } => write!(f, " member={} by={by_ms}ms", m(*member)),
            Fault::PowerFailure { member, after_ops, for_ms } => {
                write!(f, " member={} after-ops={after_ops} for={for_ms}ms", m(*member))
            }
            Fault::SyncFailure { member, for_ms } => write!(f, " member={} for={for_ms}ms", m(*member)),
            Fault::CorruptWal { member } => write!(f, " member={}", m(*member)),
            Fault::MoveLeader { to } => write!(f, " to={}", m(*to)),
            Fault::RemoveMember { member } => write!(f, " remove={}", m(*member)),
            Fault::AddMember { member } => write!(f, " add={}", m(*member)),
            Fault::PromoteMember { member } => write!(f, " promote={}", m(*member)),
            Fault::Compact { back } => write!(f, " back={back}"),
        }
    }
}

impl FromStr for Event {
    type Err = String;

    fn from_str(line: &str) -> Result<Event, String> {
        let mut words = line.split_whitespace();
        let number = |s: &str| s.trim_end_matches("ms").parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
        let at_ms = number(words.next().ok_or("empty line")?)?;
        let kind = words.next().ok_or("no fault kind")?;
        let fields: BTreeMap<&str, &str> = words
            .map(|w| w.split_once('=').ok_or_else(|| format!("{w:?} is not key=value")))
            .collect::<Result<_, _>>()?;
        let get = |key: &str| fields.get(key).copied().ok_or_else(|| format!("{kind}: missing {key}="));
        let ms = |key: &str| get(key).and_then(number);
        let member = |s: &str| -> Result<usize, String> {
            s.strip_prefix('m')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| format!("{s:?} is not a member (m1, m2, …)"))
        };
        let of = |key: &str| get(key).and_then(member);
        let fault = match kind {
            "partition" => Fault::Partition {
                side: get("side")?.split(',').map(member).collect::<Result<_, _>>()?,
                for_ms: ms("for")?,
            },
            "one-way" => match (fields.get("from"), fields.get("in"), fields.get("out")) {
                (Some(_), _, _) => Fault::CutLink { from: of("from")?, to: of("to")?, for_ms: ms("for")? },
                (_, Some(_), _) => Fault::ClogIn { member: of("in")?, for_ms: ms("for")? },
                (_, _, Some(_)) => Fault::ClogOut { member: of("out")?, for_ms: ms("for")? },
                _ => return Err("one-way: needs from=/to=, in= or out=".into()),
            },
            "isolate-leader" => Fault::IsolateLeader { for_ms: ms("for")? },
            "network" => Fault::Network {
                latency_ms_max: ms("latency-max")?,
                loss_permille: ms("loss-permille")?,
                for_ms: ms("for")?,
            },
            "crash" => Fault::Crash {
                member: of("member")?,
                power_loss: get("power-loss")?.parse().map_err(|_| "power-loss= is true or false")?,
                for_ms: ms("for")?,
            },
            "pause" => Fault::Pause { member: of("member")?, for_ms: ms("for")? },
            "clock" => Fault::ClockJump { member: of("member")?, by_ms: ms("by")? },
            "power" => Fault::PowerFailure { member: of("member")?, after_ops: ms("after-ops")?, for_ms: ms("for")? },
            "fsync" => Fault::SyncFailure { member: of("member")?, for_ms: ms("for")? },
            "corrupt" => Fault::CorruptWal { member: of("member")? },
            "move-leader" => Fault::MoveLeader { to: of("to")? },
            "membership" => match (fields.get("remove"), fields.get("add"), fields.get("promote")) {
                (Some(_), _, _) => Fault::RemoveMember { member: of("remove")? },
                (_, Some(_), _) => Fault::AddMember { member: of("add")? },
                (_, _, Some(_)) => Fault::PromoteMember { member: of("promote")? },
                _ => return Err("membership: needs remove=, add= or promote=".into()),
            },
            "compact" => Fault::Compact { back: ms("back")? },
            other => return Err(format!("unknown fault kind {other:?}")),
        };
        Ok(Event { at_ms, fault })
    }
}

/// The fault events of a run, by time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub events: Vec<Event>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for event in &self.events {
            writeln!(f, "{event}")?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// One event per line; blank lines and `#` comments are skipped.
    fn from_str(text: &str) -> Result<Schedule, String> {
        let mut events = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            events.push(line.parse().map_err(|e| format!("line {}: {e}", n + 1))?);
        }
        Ok(Schedule { events })
    }
}

/// SplitMix64: the schedule's generator, seeded from the run's seed (so a schedule can be drawn
/// and printed without running the simulation).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`low` if the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            low + self.next() % (high - low)
        }
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.range(0, one_in) == 0
    }
}

/// Shortest and longest fault window (partition, crash, pause, …).
pub const WINDOW_MS_MIN: u64 = 200;
pub const WINDOW_MS_MAX: u64 = 4_000;
/// Mean gap between two events of one kind that is on, drawn per kind per seed in this range.
pub const GAP_MS_MIN: u64 = 700;
pub const GAP_MS_MAX: u64 = 6_000;
/// Largest forward clock jump.
pub const CLOCK_JUMP_MS_MAX: u64 = 5_000;
/// Largest extra message latency and packet loss of a slow network.
pub const LATENCY_MS_MAX: u64 = 300;
pub const LOSS_PERMILLE_MAX: u64 = 100;
/// An armed power failure strikes within this many file-system operations.
pub const POWER_AFTER_OPS_MAX: u64 = 60;
/// Corrupting a member's WAL takes it away for good: at most once per run, so that a majority
/// is left to make progress with.
pub const MEMBERS_LOST_MAX: usize = 1;
/// Gap between two membership changes (each waits for the one before it to finish anyway).
pub const MEMBERSHIP_GAP_MS_MIN: u64 = 2_000;
pub const MEMBERSHIP_GAP_MS_MAX: u64 = 5_000;
/// Members never drop below this many voters by a removal (etcd's advice for any cluster
/// that is to survive a failure).
pub const VOTERS_MIN: usize = 3;

/// What a seed's schedule is drawn from.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    pub seed: u64,
    pub members: usize,
    pub duration_ms: u64,
    /// The kinds allowed; the seed turns each on or off.
    pub kinds: Vec<FaultKind>,
}

impl Schedule {
    /// The seed's schedule (see the module docs). Faults that stop a member's process never
    /// overlap on one member, and leave a majority of members running.
    pub fn generate(o: &ScheduleOptions) -> (Schedule, Vec<FaultKind>) {
        // Mixed with a constant so the schedule's stream differs from the simulator's.
        let mut rng = SplitMix(o.seed ^ 0x5eed_5c4e_d01e_0000);
        let mut on: Vec<FaultKind> = o.kinds.iter().copied().filter(|_| rng.chance(2)).collect();
        if on.is_empty() && !o.kinds.is_empty() {
            on.push(o.kinds[rng.range(0, o.kinds.len() as u64) as usize]);
        }
        // A corrupted or removed member is gone for good: drawn first, the other process faults
        // are fitted around it (drawn after them it would rarely find a free member to the end).
        on.sort_by_key(|&k| !matches!(k, FaultKind::Corrupt | FaultKind::Membership));
        let n = o.members;
        let mut events = Vec::new();
        // (member, from, until) of faults that stop a process.
        let mut stopped: Vec<(usize, u64, u64)> = Vec::new();
        let mut lost = 0;
        for &kind in &on {
            if kind == FaultKind::Membership {
                events.extend(membership_plan(&mut rng, o, &mut stopped));
                continue;
            }
            let gap_ms = rng.range(GAP_MS_MIN, GAP_MS_MAX);
            let mut at_ms = rng.range(0, gap_ms);
            if matches!(kind, FaultKind::Corrupt | FaultKind::Membership) {
                // Late, once the member has old WAL segments to damage.
                at_ms = rng.range(o.duration_ms / 2, o.duration_ms);
            }
            while at_ms < o.duration_ms {
                let for_ms = rng.range(WINDOW_MS_MIN, WINDOW_MS_MAX);
                let member = rng.range(0, n as u64) as usize;
                let other = (member + 1 + rng.range(0, n as u64 - 1) as usize) % n;
                let fault = match kind {
                    FaultKind::Partition => {
                        let minority = rng.range(1, n as u64 / 2 + 1) as usize;
                        let mut side: Vec<usize> = Vec::new();
                        while side.len() < minority {
                            let m = rng.range(0, n as u64) as usize;
                            if !side.contains(&m) {
                                side.push(m);
                            }
                        }
                        side.sort();
                        Some(Fault::Partition { side, for_ms })
                    }
                    FaultKind::OneWay => Some(match rng.range(0, 3) {
                        0 => Fault::CutLink { from: member, to: other, for_ms },
                        1 => Fault::ClogIn { member, for_ms },
                        _ => Fault::ClogOut { member, for_ms },
                    }),
                    FaultKind::IsolateLeader => Some(Fault::IsolateLeader { for_ms }),
                    FaultKind::Network => Some(Fault::Network {
                        latency_ms_max: rng.range(10, LATENCY_MS_MAX),
                        loss_permille: rng.range(0, LOSS_PERMILLE_MAX),
                        for_ms,
                    }),
                    FaultKind::Crash => Some(Fault::Crash { member, power_loss: rng.chance(2), for_ms }),
                    FaultKind::Pause => Some(Fault::Pause { member, for_ms }),
                    FaultKind::Clock => Some(Fault::ClockJump { member, by_ms: rng.range(100, CLOCK_JUMP_MS_MAX) }),
                    FaultKind::Power => {
                        Some(Fault::PowerFailure { member, after_ops: rng.range(0, POWER_AFTER_OPS_MAX), for_ms })
                    }
                    FaultKind::Fsync => Some(Fault::SyncFailure { member, for_ms }),
                    FaultKind::Corrupt if lost >= MEMBERS_LOST_MAX => None,
                    FaultKind::Corrupt => Some(Fault::CorruptWal { member }),
                    FaultKind::Membership => None,
                    FaultKind::MoveLeader => Some(Fault::MoveLeader { to: member }),
                    FaultKind::Compact => Some(Fault::Compact { back: rng.range(0, 50) }),
                };
                if let Some(fault) = fault {
                    let event = Event { at_ms, fault: fault.clone() };
                    if fits(&mut stopped, n, &event) {
                        lost += matches!(fault, Fault::CorruptWal { .. }) as usize;
                        events.push(Event { at_ms, fault });
                    }
                }
                at_ms += rng.range(gap_ms / 2, gap_ms * 3 / 2 + 1);
            }
        }
        events.sort_by_key(|e| e.at_ms);
        (Schedule { events }, on)
    }

    /// Without the events at `indexes` (positions in `events`).
    pub fn without(&self, indexes: &[usize]) -> Schedule {
        let events =
            self.events.iter().enumerate().filter(|(i, _)| !indexes.contains(i)).map(|(_, e)| e.clone()).collect();
        Schedule { events }
    }

    /// Every healing window halved (at least [`WINDOW_MS_MIN`] / 2).
    pub fn halve_windows(&self) -> Schedule {
        let mut halved = self.clone();
        for event in &mut halved.events {
            if let Some(w) = event.fault.window_ms() {
                *w = (*w / 2).max(WINDOW_MS_MIN / 2);
            }
        }
        halved
    }

    /// Events per kind.
    pub fn counts(&self) -> BTreeMap<FaultKind, usize> {
        let mut counts = BTreeMap::new();
        for e in &self.events {
            *counts.entry(e.fault.kind()).or_insert(0) += 1;
        }
        counts
    }
}

/// Whether `event` may stop its member's process (if it stops one) without overlapping another
/// stop of that member or leaving less than a majority of the founders running; if so, it is
/// recorded in `stopped` as (member, from, until).
///
/// Intervals that only touch count as overlapping: a stop beginning at the very instant
/// another ends would race with that one's restart, and the executor picks the order (5-member
/// lease seed 64: a crash began at 59,405 ms, then the crash ending then restarted the member
/// under it, and the second crash's end started it a second time).
fn fits(stopped: &mut Vec<(usize, u64, u64)>, members: usize, event: &Event) -> bool {
    let Some((m, from, until)) = stopped_interval(event) else { return true };
    let overlapping: Vec<&(usize, u64, u64)> = stopped.iter().filter(|&&(_, f, to)| f <= until && from <= to).collect();
    let free = !overlapping.iter().any(|&&(x, _, _)| x == m);
    let majority_left = overlapping.len() < (members - 1) / 2;
    if free && majority_left {
        stopped.push((m, from, until));
    }
    free && majority_left
}

/// The membership changes of a run, as a plan the cluster can follow: a learner added is
/// promoted next; a voter is removed only while more than [`VOTERS_MIN`] are planned; a slot is
/// added only while at most `members` are planned, so the cluster never exceeds `members + 1`.
/// Added are the spare slot (`members`), then removed founders' slots again (with a fresh
/// disk, under a new id). A removal counts as a stop of its member to the end of the run (no
/// other fault stops that slot again, re-added or not).
fn membership_plan(rng: &mut SplitMix, o: &ScheduleOptions, stopped: &mut Vec<(usize, u64, u64)>) -> Vec<Event> {
    let n = o.members;
    let mut voters: Vec<usize> = (0..n).collect();
    let mut learner: Option<usize> = None;
    // Slots that may be added: the spare, then founders once removed.
    let mut addable: Vec<usize> = vec![n];
    let mut events = Vec::new();
    let mut at_ms = rng.range(0, o.duration_ms / 3);
    while at_ms < o.duration_ms {
        let remove_wanted = voters.len() > VOTERS_MIN && (addable.is_empty() || rng.chance(2));
        let fault = if let Some(member) = learner.take() {
            voters.push(member);
            Some(Fault::PromoteMember { member })
        } else if voters.len() <= n && !addable.is_empty() && !remove_wanted {
            let member = addable.remove(0);
            learner = Some(member);
            Some(Fault::AddMember { member })
        } else if voters.len() > VOTERS_MIN {
            let founders: Vec<usize> = voters.iter().copied().filter(|&v| v < n).collect();
            let member = founders[rng.range(0, founders.len() as u64) as usize];
            let event = Event { at_ms, fault: Fault::RemoveMember { member } };
            if fits(stopped, n, &event) {
                voters.retain(|&v| v != member);
                addable.push(member);
                Some(event.fault)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(fault) = fault {
            events.push(Event { at_ms, fault });
        }
        at_ms += rng.range(MEMBERSHIP_GAP_MS_MIN, MEMBERSHIP_GAP_MS_MAX);
    }
    events
}

/// The member a fault stops the process of, and from when until when it may be down: a
/// corrupted member stays down to the end; a power or sync failure may take a while to strike.
pub fn stopped_interval(event: &Event) -> Option<(usize, u64, u64)> {
    let m = event.fault.process_member()?;
    let until = match event.fault {
        Fault::CorruptWal { .. } | Fault::RemoveMember { .. } => u64::MAX,
        Fault::PowerFailure { for_ms, .. } | Fault::SyncFailure { for_ms, .. } => event.at_ms + ARM_WINDOW_MS + for_ms,
        Fault::Crash { for_ms, .. } | Fault::Pause { for_ms, .. } => event.at_ms + for_ms,
        _ => event.at_ms,
    };
    Some((m, event.at_ms, until))
}

/// How long an armed power or sync failure waits for the member to touch its disk.
pub const ARM_WINDOW_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> ScheduleOptions {
        ScheduleOptions { seed, members: 5, duration_ms: 20_000, kinds: FaultKind::ALL.to_vec() }
    }

    #[test]
    fn a_schedule_prints_and_parses_back_to_itself() {
        for seed in 0..50 {
            let (schedule, _) = Schedule::generate(&options(seed));
            let text = schedule.to_string();
            assert_eq!(text.parse::<Schedule>(), Ok(schedule), "seed {seed}:\n{text}");
        }
    }

    #[test]
    fn the_seed_decides_the_schedule_and_every_kind_comes_up_across_seeds() {
        assert_eq!(Schedule::generate(&options(7)), Schedule::generate(&options(7)));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let (schedule, on) = Schedule::generate(&options(seed));
            assert!(schedule.events.iter().all(|e| on.contains(&e.fault.kind())), "only kinds that are on");
            seen.extend(schedule.counts().into_keys());
        }
        assert_eq!(seen.len(), FaultKind::ALL.len(), "kinds seen in 40 seeds: {seen:?}");
    }

    #[test]
    fn process_faults_never_overlap_on_a_member_and_leave_a_majority_running() {
        for members in [3, 5] {
            for seed in 0..100 {
                let (schedule, _) = Schedule::generate(&ScheduleOptions { members, ..options(seed) });
                let stops: Vec<(usize, u64, u64)> = schedule.events.iter().filter_map(stopped_interval).collect();
                for (i, &(m, from, _)) in stops.iter().enumerate() {
                    let others: Vec<&(usize, u64, u64)> = stops[..i]
                        .iter()
                        .chain(&stops[i + 1..])
                        .filter(|&&(_, f, to)| f <= from && from <= to)
                        .collect();
                    assert!(others.iter().all(|&&(x, _, _)| x != m), "seed {seed}: m{} stopped twice", m + 1);
                    assert!(others.len() < members.div_ceil(2), "seed {seed}: a majority stopped at {from}ms");
                }
            }
        }
    }

    #[test]
    fn membership_plans_stay_between_three_voters_and_one_member_more_than_founded() {
        let mut kinds_seen = std::collections::BTreeSet::new();
        for members in [3, 5] {
            for seed in 0..200 {
                let o = ScheduleOptions { members, kinds: vec![FaultKind::Membership], ..options(seed) };
                let (schedule, _) = Schedule::generate(&o);
                let (mut voters, mut learners): (Vec<usize>, Vec<usize>) = ((0..members).collect(), Vec::new());
                for e in &schedule.events {
                    kinds_seen.insert(
                        e.to_string().split_whitespace().nth(2).and_then(|w| w.split('=').next()).map(String::from),
                    );
                    match e.fault {
                        Fault::AddMember { member } => {
                            assert!(!voters.contains(&member) && !learners.contains(&member), "seed {seed}: {e}");
                            assert!(member == members || member < members, "seed {seed}: {e}");
                            learners.push(member);
                        }
                        Fault::PromoteMember { member } => {
                            assert!(learners.contains(&member), "seed {seed}: promotes a non-learner: {e}");
                            learners.retain(|&l| l != member);
                            voters.push(member);
                        }
                        Fault::RemoveMember { member } => {
                            assert!(voters.contains(&member), "seed {seed}: removes a non-voter: {e}");
                            voters.retain(|&v| v != member);
                        }
                        _ => unreachable!("only membership faults are on"),
                    }
                    assert!(voters.len() + learners.len() <= members + 1, "seed {seed}: too many members at {e}");
                    assert!(voters.len() >= VOTERS_MIN, "seed {seed}: too few voters at {e}");
                }
            }
        }
        assert_eq!(kinds_seen.len(), 3, "add, promote and remove all come up");
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert!("100ms crash member=m0 power-loss=true for=5ms".parse::<Event>().is_err());
        assert!("100ms nonsense".parse::<Event>().is_err());
        assert!("100ms membership member=m2".parse::<Event>().is_err());
        assert_eq!(
            "100ms membership add=m6".parse::<Event>(),
            Ok(Event { at_ms: 100, fault: Fault::AddMember { member: 5 } })
        );
        assert!("xms crash".parse::<Event>().is_err());
        assert_eq!(
            "100ms corrupt member=m2".parse::<Event>(),
            Ok(Event { at_ms: 100, fault: Fault::CorruptWal { member: 1 } })
        );
    }
}
