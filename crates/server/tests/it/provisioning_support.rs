//! Fixtures for the provisioning and account tests: the OAuth fixtures of
//! `oauth2_support` with a handle on the state's [`MockHomeserver`], and a
//! way to see the homeserver jobs waiting in the queue.

use std::sync::Arc;

use chrono::Duration;
use vestibule_server::{
    Resources,
    homeserver::MockHomeserver,
    jobs::{HOMESERVER_QUEUE, HomeserverJob, JobWorker, PassReport, WorkerSettings},
};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    harness::TestApp,
    oauth2_support::{Fx, HS_SECRET, ISSUER},
};

/// An [`Fx`] whose homeserver is a mock the test can look at.
pub struct Hx {
    pub fx: Fx,
    pub hs: Arc<MockHomeserver>,
}

impl Hx {
    pub async fn new() -> Self {
        Self::on(TestDatabase::sqlite().await.expect("sqlite"), |_| {})
    }

    pub fn on(db: TestDatabase, configure: impl FnOnce(&mut vestibule_config::Config)) -> Self {
        let (t, hs) = app_with_mock(db, ISSUER, |c| {
            c.matrix.secret = Some(HS_SECRET.into());
            configure(c);
        });
        let app = t.router(&Resources::all(), None);
        Self {
            fx: Fx { t, app },
            hs,
        }
    }

    pub async fn cleanup(self) {
        self.fx.cleanup().await;
    }

    pub async fn pending_jobs(&self) -> Vec<HomeserverJob> {
        pending_jobs(&self.fx.t).await
    }

    pub async fn run_jobs(&self) -> PassReport {
        run_jobs(&self.fx.t).await
    }
}

/// A [`TestApp`] whose state talks to a fresh [`MockHomeserver`].
pub fn app_with_mock(
    db: TestDatabase,
    public_base: &str,
    configure: impl FnOnce(&mut vestibule_config::Config),
) -> (TestApp, Arc<MockHomeserver>) {
    let mut t = TestApp::with(db, public_base, configure);
    let hs = Arc::new(MockHomeserver::new("example.org"));
    t.state.homeserver = hs.clone();
    (t, hs)
}

/// The homeserver jobs due now, without taking them: reserved in a
/// transaction that is then rolled back.
pub async fn pending_jobs(t: &TestApp) -> Vec<HomeserverJob> {
    let mut repo = t.state.repos.write().await.unwrap();
    let jobs = repo
        .jobs()
        .reserve(
            t.state.clock.as_ref(),
            &[HOMESERVER_QUEUE],
            1000,
            Duration::minutes(1),
        )
        .await
        .unwrap();
    repo.cancel().await.unwrap();
    jobs.into_iter()
        .map(|j| serde_json::from_value(j.payload).unwrap())
        .collect()
}

/// One pass of the job worker against the state's homeserver.
pub async fn run_jobs(t: &TestApp) -> PassReport {
    JobWorker::from_state(&t.state, WorkerSettings::default())
        .run_once()
        .await
        .unwrap()
}
