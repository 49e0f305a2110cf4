//! A deadline that moves often but registers few timers.
//!
//! The driver waits for "the node's next timeout or a command", each peer sender for "a message
//! or a second of silence", each peer receiver for "a batch or three seconds of silence". Written
//! as a fresh `sleep_until` per turn, every turn registers a timer — and madsim keeps every
//! registered timer in one heap until its time comes (polling a pending `Sleep` adds another),
//! so a busy simulation spent a tenth of its time sifting tens of thousands of dead timers.
//!
//! [`Deadline`] keeps one timer armed. Moving the deadline later costs nothing: when the armed
//! timer fires early, the deadline arms itself again for the real time. Only moving it earlier
//! than the armed timer registers a new one. It must be polled from one task (the timer it armed
//! wakes the task that polled it then), which is how every user here holds it: in a `select!`
//! of the task's own loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

pub struct Deadline {
    /// When the future is ready.
    at: Instant,
    /// The time the runtime's timer was last registered for, if it has not passed yet.
    armed_for: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl Deadline {
    pub fn new(at: Instant) -> Self {
        Deadline { at, armed_for: None, sleep: Box::pin(tokio::time::sleep_until(at)) }
    }

    /// Moves the deadline (earlier or later); a ready deadline can be moved and awaited again.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= self.at {
            return Poll::Ready(());
        }
        // A timer armed for a time still ahead, and no later than the deadline, wakes this task
        // in time: then this poll runs again and arms for the rest.
        if let Some(armed_for) = self.armed_for {
            if now < armed_for && armed_for <= self.at {
                return Poll::Pending;
            }
        }
        let at = self.at;
        self.armed_for = Some(at);
        self.sleep.as_mut().reset(at);
        // Registers the timer; it cannot be ready, as `now < at`.
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_waits_for_the_new_time_and_one_moved_earlier_fires_early() {
        let start = Instant::now();
        let mut deadline = Deadline::new(start + Duration::from_secs(1));
        // Armed for 1 s, then pushed to 3 s: it must not fire at 1 s.
        assert!(tokio::time::timeout(Duration::from_millis(500), &mut deadline).await.is_err());
        deadline.set(start + Duration::from_secs(3));
        (&mut deadline).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // Pulled earlier than a timer armed later: fires at the earlier time.
        deadline.set(start + Duration::from_secs(10));
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut deadline).await.is_err());
        deadline.set(start + Duration::from_secs(4));
        (&mut deadline).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(4));
    }
}
