use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{self, Iter};
use parking_lot::Mutex;

use super::*;

type Items = Iter<std::vec::IntoIter<Result<u32, String>>>;
type Follower = Reconnecting<Items, BoxFuture<'static, Result<Items, String>>>;

/// What each open does: fail, give a stream of these items, or take this
/// long and then give an empty stream.
enum Open {
    Fail(&'static str),
    Items(Vec<Result<u32, String>>),
    Slow(Duration),
}

fn follower(plan: Vec<Open>) -> (Follower, Arc<Mutex<Vec<Instant>>>) {
    let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = opened.clone();
    let follow = Reconnecting::new("test", Duration::from_secs(1), move || {
        seen.lock().push(Instant::now());
        let next = plan.lock().pop_front();
        let open: BoxFuture<'static, Result<Items, String>> = Box::pin(async move {
            match next {
                Some(Open::Fail(why)) => Err(why.to_owned()),
                Some(Open::Items(items)) => Ok(stream::iter(items)),
                Some(Open::Slow(took)) => {
                    tokio::time::sleep(took).await;
                    Ok(stream::iter(vec![Ok(99)]))
                }
                None => std::future::pending().await,
            }
        });
        open
    });
    (follow, opened)
}

#[tokio::test(start_paused = true)]
async fn items_then_losses_then_items_again_with_backoff_between_opens() {
    let (mut follow, opened) = follower(vec![
        Open::Fail("refused"),
        Open::Items(vec![Ok(1), Ok(2), Err("reset".to_owned())]),
        Open::Items(vec![Ok(3)]),
    ]);
    let start = Instant::now();
    assert_eq!(follow.next().await, Followed::Lost("refused".to_owned()));
    assert_eq!(follow.next().await, Followed::Item(1));
    assert_eq!(follow.next().await, Followed::Item(2));
    assert_eq!(follow.next().await, Followed::Lost("reset".to_owned()));
    assert_eq!(follow.next().await, Followed::Item(3));
    assert_eq!(
        follow.next().await,
        Followed::Lost("the test stream ended".to_owned())
    );
    let opened = opened.lock().clone();
    assert_eq!(opened.len(), 3);
    assert_eq!(opened[0], start, "the first open is at once");
    let waited = opened[1] - opened[0];
    assert!(
        waited >= Duration::from_millis(50) && waited <= Duration::from_millis(100),
        "{waited:?}"
    );
    let waited = opened[2] - opened[1];
    assert!(
        waited >= Duration::from_millis(50) && waited <= Duration::from_millis(100),
        "items reset the backoff: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_that_hangs_is_a_loss() {
    let (mut follow, _) = follower(vec![Open::Slow(Duration::from_secs(5))]);
    assert_eq!(
        follow.next().await,
        Followed::Lost("timed out opening the test stream".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn a_select_that_often_wins_elsewhere_does_not_restart_the_open() {
    let (mut follow, opened) = follower(vec![Open::Slow(Duration::from_millis(300))]);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let mut ticked = 0;
    // A restarted open would find no plan left and never finish.
    let item = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = ticks.tick() => ticked += 1,
                followed = follow.next() => break followed,
            }
        }
    })
    .await
    .expect("the open finishes");
    assert_eq!(item, Followed::Item(99));
    assert!(
        ticked >= 30,
        "the other branch won {ticked} times meanwhile"
    );
    assert_eq!(
        opened.lock().len(),
        1,
        "one open, kept across the cancelled calls"
    );
}
