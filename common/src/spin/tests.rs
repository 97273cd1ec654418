use super::*;
use std::io::Write;

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

#[test]
fn the_window_widens_after_short_idle_spells_and_closes_after_long_ones() {
    let mut w = Window::new(us(200));
    // Idle spells longer than the longest window halve it, down to none.
    for want in [100_000, 50_000, 25_000, 12_500, 0, 0] {
        w.after(false, us(5_000));
        assert_eq!(w.now, Duration::from_nanos(want));
    }
    // A spell that ended soon after polling gave up widens it again, up to the longest.
    for want in [10, 20, 40, 80, 160, 200, 200] {
        w.after(false, us(150));
        assert_eq!(w.now, us(want));
    }
    // A message caught while polling keeps it.
    w.after(true, us(5_000));
    assert_eq!(w.now, us(200));
    // Off stays off.
    let mut off = Window::new(Duration::ZERO);
    off.after(false, us(10));
    assert_eq!(off.now, Duration::ZERO);
}

fn runtime(max: Duration) -> (tokio::runtime::Runtime, Arc<Spin>) {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all();
    let (rt, spin) = Spin::build_with(&mut b, max).unwrap();
    (rt, spin.unwrap())
}

/// The runtime's epoll instance is found, and a socket made ready while the thread polls
/// ends polling: the read is caught, not slept through.
#[test]
fn a_socket_made_ready_while_polling_is_caught() {
    let (rt, spin) = runtime(Duration::from_secs(2));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"x").unwrap();
        s
    });
    let took = rt.block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        start.elapsed()
    });
    let _ = writer.join();
    assert!(spin.caught() >= 1, "no wake-up was caught while polling");
    // Polling ended at the message, well inside its 2 s window.
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn an_idle_runtime_stops_polling() {
    let (rt, spin) = runtime(Duration::from_millis(1));
    rt.block_on(async {
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert_eq!(spin.window(), Duration::ZERO, "caught {}", spin.caught());
}

/// What `w.wait` took from `rx`, and whether it blocked for it.
fn wait_on(w: &mut Window, rx: &std::sync::mpsc::Receiver<u32>) -> (Option<u32>, bool) {
    let mut blocked = false;
    let got = w.wait(
        || rx.try_recv().ok().map(Some),
        || {
            blocked = true;
            rx.recv().ok()
        },
    );
    (got, blocked)
}

#[test]
fn a_channel_polled_within_the_window_is_not_blocked_on() {
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let _ = tx.send(7);
        tx
    });
    let mut w = Window::new(Duration::from_secs(2));
    let (got, blocked) = wait_on(&mut w, &rx);
    assert_eq!(got, Some(7));
    assert!(!blocked, "polling gave up before the message");
    assert_eq!(
        w.now,
        Duration::from_secs(2),
        "a caught message keeps the window"
    );
    // Nothing within a short window: it blocks, and the long wait halves the window.
    let mut w = Window::new(Duration::from_micros(100));
    let tx = sender.join().unwrap();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let _ = tx.send(8);
    });
    let (got, blocked) = wait_on(&mut w, &rx);
    let _ = late.join();
    assert_eq!(got, Some(8));
    assert!(blocked);
    assert_eq!(w.now, Duration::from_micros(50));
}
