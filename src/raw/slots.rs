//! The pure functions that decide which copy of a multi-slot record to trust on open and
//! which slot the next write goes to. Kept apart from any I/O so they can be tested over
//! every combination of torn and valid slots.
//!
//! A slot is described by `Option<u64>`: `Some(seq)` when its checksum holds, `None` when
//! it is torn, zeroed or otherwise invalid.

/// The slot to trust: the valid slot with the highest sequence number (the lowest index on
/// a tie, which only a corrupted file can produce), or `None` if no slot is valid.
pub(crate) fn newest(slots: &[Option<u64>]) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for (i, slot) in slots.iter().enumerate() {
        if let Some(seq) = *slot
            && best.is_none_or(|(_, b)| seq > b)
        {
            best = Some((i, seq));
        }
    }
    best.map(|(i, _)| i)
}

/// The slot the next write goes to: an invalid slot if there is one, else the oldest (the
/// highest index among equally old ones, so that even a file whose slots all carry one
/// sequence number never has its trusted copy overwritten).
/// With two or more slots this is never the slot [`newest`] trusts, so a torn write can
/// only ever destroy a copy older than the newest durable one.
pub(crate) fn write_target(slots: &[Option<u64>]) -> usize {
    if let Some(i) = slots.iter().position(Option::is_none) {
        return i;
    }
    let mut oldest = 0;
    for (i, slot) in slots.iter().enumerate() {
        if slot <= &slots[oldest] {
            oldest = i;
        }
    }
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every assignment of {invalid, seq 1..=4} to 1..=4 slots.
    fn all_states() -> Vec<Vec<Option<u64>>> {
        let mut out = Vec::new();
        for n in 1..=4u32 {
            for code in 0..5u32.pow(n) {
                let mut c = code;
                let slots = (0..n)
                    .map(|_| {
                        let d = c % 5;
                        c /= 5;
                        (d > 0).then_some(u64::from(d))
                    })
                    .collect();
                out.push(slots);
            }
        }
        out
    }

    #[test]
    fn newest_is_the_highest_valid_sequence() {
        for slots in all_states() {
            let max = slots.iter().flatten().max().copied();
            match newest(&slots) {
                None => assert!(max.is_none(), "{slots:?}"),
                Some(i) => {
                    assert_eq!(slots[i], max, "{slots:?}");
                    assert!(slots[..i].iter().all(|s| *s != max), "lowest index wins");
                }
            }
        }
    }

    #[test]
    fn write_target_never_hits_the_newest_copy() {
        for slots in all_states() {
            let t = write_target(&slots);
            assert!(t < slots.len());
            if slots.len() >= 2 {
                assert_ne!(Some(t), newest(&slots), "{slots:?}");
            }
            if slots.contains(&None) {
                assert_eq!(slots[t], None, "invalid slots are reused first: {slots:?}");
            }
        }
    }

    /// Simulates writes where any single write may tear, from every start state: after
    /// each step, recovery yields either the value just written or the one durable
    /// before it, never anything older or invented.
    #[test]
    fn a_torn_write_falls_back_to_the_previous_value() {
        for n in 2..=4usize {
            for tear_at in 0..12u64 {
                // slots hold (seq, value); value == seq here.
                let mut slots: Vec<Option<u64>> = vec![None; n];
                let mut durable: Option<u64> = None;
                for seq in 1..=12u64 {
                    let t = write_target(&slots);
                    if seq == tear_at {
                        slots[t] = None;
                        let got = newest(&slots).and_then(|i| slots[i]);
                        assert_eq!(got, durable, "n={n} torn write {seq}");
                    } else {
                        slots[t] = Some(seq);
                        durable = Some(seq);
                        assert_eq!(newest(&slots).and_then(|i| slots[i]), durable);
                    }
                }
            }
        }
    }
}
