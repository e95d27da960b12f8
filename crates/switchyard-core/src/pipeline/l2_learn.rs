//! Stage `l2-learn`: remember which port a source MAC lives behind.
//!
//! Learning happens before forwarding, so the very frame that teaches the FDB is
//! forwarded by it too (VPP does the same). A MAC already known on another port
//! *moves* — a host that migrated, or a loop if it happens a lot, hence the counter.
//! When the FDB is full nothing new is learned; traffic to unknown MACs is flooded
//! instead, which is slower but never wrong.
//!
//! Events: [`Event::FdbLearned`], [`Event::FdbMoved`], [`Event::FdbLimit`].
//! Trace: `l2-learn: learned 02:42:ac:11:00:02 on port a (bridge default)`

use super::trace::note;
use super::{Event, Frame, Learn, Pipeline, L2};

const STAGE: &str = "l2-learn";

impl Pipeline {
    pub(super) fn l2_learn(&mut self, f: &Frame, l2: &L2, now_s: u32) {
        let result = self.sh.fdb.learn(l2.domain, l2.src, f.ingress, now_s);
        match result {
            Learn::New => self.counters.event(Event::FdbLearned),
            Learn::Refreshed => {}
            Learn::Moved { .. } => self.counters.event(Event::FdbMoved),
            Learn::TableFull => self.counters.event(Event::FdbLimit),
        }
        if f.trace != 0 {
            self.trace_learn(f, l2, result);
        }
    }

    #[cold]
    fn trace_learn(&mut self, f: &Frame, l2: &L2, result: Learn) {
        let port = self.port_name(f.ingress).to_string();
        let bridge = self.sh.domains[l2.domain.index()].spec.name.clone();
        match result {
            Learn::New => note!(
                self,
                f,
                STAGE,
                "learned {} on port {} (bridge {})",
                l2.src,
                port,
                bridge
            ),
            Learn::Refreshed => note!(
                self,
                f,
                STAGE,
                "{} already known on port {} (bridge {}): age reset",
                l2.src,
                port,
                bridge
            ),
            Learn::Moved { from } => {
                let from = self.port_name(from).to_string();
                note!(
                    self,
                    f,
                    STAGE,
                    "{} moved from port {} to port {} (bridge {})",
                    l2.src,
                    from,
                    port,
                    bridge
                )
            }
            Learn::TableFull => note!(
                self,
                f,
                STAGE,
                "FDB full ({} entries): {} not learned",
                self.sh.fdb.capacity(),
                l2.src
            ),
        }
    }
}
