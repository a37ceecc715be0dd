//! Connection timers in O(1) per operation with no allocation per request.
//!
//! Every timer of one kind has the same duration, so a list of them kept in
//! insertion order is also in deadline order. Each kind has an intrusive doubly
//! linked list threaded through a `Vec` indexed by connection slot: arming appends at
//! the tail, disarming unlinks, and expiry pops from the heads. Nothing is sorted and
//! nothing is allocated once the node vector has grown to the number of slots.

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The rest of a request head (slowloris guard); answered with 408.
    Header = 0,
    /// The next request on a keep-alive connection.
    Idle = 1,
    /// The rest of a request's content (trickled bodies); answered with 408.
    Body = 2,
    /// The client to read what was sent.
    Write = 3,
    /// The client to close after the server's final response.
    Linger = 4,
}

/// Number of [`TimerKind`]s.
pub(crate) const KINDS: usize = 5;
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Option<TimerKind>,
    deadline: u64,
    prev: u32,
    next: u32,
}

const EMPTY: Node = Node {
    kind: None,
    deadline: 0,
    prev: NIL,
    next: NIL,
};

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// The timers of one worker. Times are milliseconds on the worker's monotonic clock.
pub(crate) struct Timers {
    nodes: Vec<Node>,
    lists: [List; KINDS],
    durations: [u64; KINDS],
}

impl Timers {
    /// Timers with the given durations in milliseconds, indexed by [`TimerKind`].
    pub(crate) fn new(durations: [u64; KINDS]) -> Timers {
        Timers {
            nodes: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; KINDS],
            durations,
        }
    }

    /// The kind armed for `slot`, if any.
    pub(crate) fn kind(&self, slot: usize) -> Option<TimerKind> {
        self.nodes.get(slot).and_then(|n| n.kind)
    }

    /// Arms (or re-arms) `slot` to fire `kind`'s duration after `now`.
    pub(crate) fn arm(&mut self, slot: usize, kind: TimerKind, now: u64) {
        self.disarm(slot);
        if self.nodes.len() <= slot {
            self.nodes.resize(slot + 1, EMPTY);
        }
        let k = kind as usize;
        let idx = slot as u32;
        let tail = self.lists[k].tail;
        self.nodes[slot] = Node {
            kind: Some(kind),
            deadline: now + self.durations[k],
            prev: tail,
            next: NIL,
        };
        if tail == NIL {
            self.lists[k].head = idx;
        } else {
            self.nodes[tail as usize].next = idx;
        }
        self.lists[k].tail = idx;
    }

    /// Disarms `slot`'s timer, if armed.
    pub(crate) fn disarm(&mut self, slot: usize) {
        let Some(node) = self.nodes.get(slot).copied() else {
            return;
        };
        let Some(kind) = node.kind else { return };
        let k = kind as usize;
        if node.prev == NIL {
            self.lists[k].head = node.next;
        } else {
            self.nodes[node.prev as usize].next = node.next;
        }
        if node.next == NIL {
            self.lists[k].tail = node.prev;
        } else {
            self.nodes[node.next as usize].prev = node.prev;
        }
        self.nodes[slot] = EMPTY;
    }

    /// The earliest deadline of any armed timer.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.lists
            .iter()
            .filter(|l| l.head != NIL)
            .map(|l| self.nodes[l.head as usize].deadline)
            .min()
    }

    /// Disarms and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<(usize, TimerKind)> {
        for list in self.lists {
            if list.head != NIL {
                let node = self.nodes[list.head as usize];
                if node.deadline <= now {
                    let slot = list.head as usize;
                    self.disarm(slot);
                    return node.kind.map(|k| (slot, k));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_rearm_moves() {
        let mut t = Timers::new([100, 1000, 5000, 50, 10]);
        t.arm(3, TimerKind::Header, 0);
        t.arm(7, TimerKind::Idle, 0);
        t.arm(1, TimerKind::Header, 20);
        t.arm(2, TimerKind::Write, 0);
        assert_eq!(t.next_deadline(), Some(50));
        assert_eq!(t.pop_expired(49), None);
        assert_eq!(t.pop_expired(60), Some((2, TimerKind::Write)));
        t.arm(3, TimerKind::Header, 90); // re-arm moves 3 behind 1
        assert_eq!(t.pop_expired(150), Some((1, TimerKind::Header)));
        assert_eq!(t.pop_expired(150), None);
        t.disarm(3);
        assert_eq!(t.kind(3), None);
        assert_eq!(t.next_deadline(), Some(1000));
        assert_eq!(t.pop_expired(5000), Some((7, TimerKind::Idle)));
        assert_eq!(t.next_deadline(), None);
    }
}
