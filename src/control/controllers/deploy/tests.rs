//! The deploy controller against a hand-made world: units that start, restart and stop as the
//! actions say, backends whose counters the test moves, a fake clock.

use super::*;
use crate::config::testing::valid;
use crate::control::controller::tests::view_with_error_rate;
use crate::control::discovery::units::testing::unit;
use crate::deploy::analysis::Verdict;
use crate::deploy::spec::{AnalysisSpec, BlueGreenSpec, CanarySpec, Strategy};
use crate::deploy::version::{self, VersionChange};
use crate::metrics::aggregate::{BackendRow, UpstreamRow};
use crate::metrics::counters::ClassCounts;
use crate::metrics::stats::{BackendCounts, UpstreamCounts};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const CONFIG: &str = "[listener.http]\naddress = \"127.0.0.1:0\"\nupstream = \"api\"\n\
                      [upstream.api.discover]\nsystemd = \"api@*.service\"\n\
                      address = \"127.0.0.1:{8000+N}\"\n\
                      [upstream.api.health]\npath = \"/health\"\n";

fn address(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000 + n))
}

#[derive(Debug, Clone)]
struct Instance {
    state: &'static str,
    invocation: u32,
    restarts: u32,
    /// Responses so far: (all, 5xx).
    answered: (u64, u64),
}

struct World {
    instances: BTreeMap<u16, Instance>,
    weight_bp: u16,
    now: Instant,
    dir: PathBuf,
}

impl World {
    fn new(stable: &[u16]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lbproxy-deploy-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let instances = stable
            .iter()
            .map(|&n| {
                let i = Instance {
                    state: "active",
                    invocation: 1,
                    restarts: 0,
                    answered: (0, 0),
                };
                (n, i)
            })
            .collect();
        World {
            instances,
            weight_bp: 0,
            now: Instant::now(),
            dir,
        }
    }

    fn view(&self) -> View {
        let config = valid(CONFIG);
        let backends = self
            .instances
            .iter()
            .filter(|(_, i)| i.state == "active")
            .map(|(&n, i)| {
                let mut responses = ClassCounts::default();
                responses.0[2] = i.answered.0 - i.answered.1;
                responses.0[5] = i.answered.1;
                BackendRow::up_for_tests(
                    address(n),
                    BackendCounts {
                        responses,
                        ..BackendCounts::default()
                    },
                )
            })
            .collect();
        let mut base = view_with_error_rate(0.0, 0);
        base.latest = None;
        base.metrics.upstreams = vec![UpstreamRow {
            name: "api".into(),
            balance: "round_robin",
            counts: UpstreamCounts::default(),
            backends,
        }];
        let units = self
            .instances
            .iter()
            .map(|(&n, i)| {
                let mut u = unit(n, i.state, &format!("inv{n}-{}", i.invocation));
                u.unit.n_restarts = i.restarts;
                u
            })
            .collect();
        View {
            config: Arc::new(config),
            units: Arc::new(BTreeMap::from([("api".to_owned(), units)])),
            ..base
        }
    }

    /// Systemd and the workers: units start, stop and restart at once; version files are
    /// written and removed for real; the split is remembered.
    fn apply(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::StartUnit { unit, version, .. } => {
                    version.apply().unwrap();
                    let n = number(unit);
                    let i = self.instances.entry(n).or_insert(Instance {
                        state: "active",
                        invocation: 0,
                        restarts: 0,
                        answered: (0, 0),
                    });
                    i.state = "active";
                    i.invocation += 1;
                }
                Action::RestartUnit { unit, version, .. } => {
                    version.apply().unwrap();
                    let i = self.instances.get_mut(&number(unit)).unwrap();
                    i.invocation += 1;
                }
                Action::StopUnit { unit, version, .. } => {
                    self.instances.remove(&number(unit));
                    version.apply().unwrap();
                }
                Action::SetSplit { split, .. } => self.weight_bp = split.weight_bp,
                _ => {}
            }
        }
    }

    /// `total` requests answered over `interval`: the canary (`canary` units) takes its
    /// weight's share and answers `canary_errors` of each 100 with a 500.
    fn traffic(&mut self, total: u64, canary: &[u16], canary_errors: u64) {
        let canary_share = total * u64::from(self.weight_bp) / 10_000;
        let active: Vec<u16> = self
            .instances
            .iter()
            .filter(|(_, i)| i.state == "active")
            .map(|(&n, _)| n)
            .collect();
        let (new, old): (Vec<u16>, Vec<u16>) = active.iter().partition(|n| canary.contains(n));
        for (side, share, errors) in [
            (&new, canary_share, canary_errors),
            (&old, total - canary_share, 0),
        ] {
            for n in side.iter() {
                let each = share / side.len() as u64;
                let i = self.instances.get_mut(n).unwrap();
                i.answered.0 += each;
                i.answered.1 += each * errors / 100;
            }
        }
    }

    fn tick(&mut self, controller: &mut DeployController, seconds: f64) -> Vec<Action> {
        self.now += Duration::from_secs_f64(seconds);
        let actions = controller.tick(self.now, &self.view());
        self.apply(&actions);
        controller.actions_done();
        actions
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn number(unit: &str) -> u16 {
    unit.trim_start_matches("api@")
        .trim_end_matches(".service")
        .parse()
        .unwrap()
}

fn spec(strategy: Strategy) -> DeploySpec {
    DeploySpec {
        upstream: "api".into(),
        version: "v2".into(),
        strategy,
        environment: BTreeMap::new(),
        canary: CanarySpec {
            instances: 1,
            steps: vec![10.0, 50.0, 100.0],
            interval: Duration::from_secs(10),
            ..CanarySpec::default()
        },
        analysis: AnalysisSpec::default(),
        blue_green: BlueGreenSpec {
            keep_blue: Duration::ZERO,
        },
    }
}

fn controller(world: &World) -> (DeployController, Arc<DeployBoard>) {
    let board = Arc::new(DeployBoard::default());
    let controller = DeployController::new(board.clone(), Some(world.dir.clone()));
    (controller, board)
}

fn events(board: &DeployBoard) -> Vec<String> {
    let d = board.current().unwrap();
    d.decisions.iter().map(|d| d.event.clone()).collect()
}

/// Ticks (each `step` seconds, `rps` requests a second) until the deployment ends, at most
/// `limit` ticks.
fn run_to_end(
    world: &mut World,
    controller: &mut DeployController,
    board: &DeployBoard,
    rps: u64,
    canary_errors: u64,
    limit: usize,
) {
    for _ in 0..limit {
        world.traffic(rps, &[4], canary_errors);
        world.tick(controller, 1.0);
        if board.current().is_some_and(|d| !d.in_progress()) {
            return;
        }
    }
    panic!("not ended: {:#?}", events(board));
}

#[test]
fn a_good_canary_steps_through_every_weight_and_is_promoted() {
    let mut world = World::new(&[1, 2, 3]);
    let (mut controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap();
    let first = world.tick(&mut controller, 0.5);
    let described: Vec<String> = first.iter().map(ToString::to_string).collect();
    assert!(described[0].contains("0 % of the clients"), "{described:?}");
    assert_eq!(described[1], "start api@4.service (upstream \"api\")");
    let file = version::file_for(&world.dir, "api@4.service");
    assert_eq!(
        version::running(&world.dir, "api@4.service").as_deref(),
        Some("v2")
    );
    assert!(file.exists());

    let mut weights = Vec::new();
    for _ in 0..200 {
        world.traffic(1000, &[4], 0);
        world.tick(&mut controller, 1.0);
        if weights.last() != Some(&world.weight_bp) {
            weights.push(world.weight_bp);
        }
        if !board.current().unwrap().in_progress() {
            break;
        }
    }
    let d = board.current().unwrap();
    assert_eq!(d.outcome, Some(Outcome::Promoted), "{:#?}", d.decisions);
    assert_eq!(
        weights,
        [1000, 5000, 10_000, 0],
        "each step, then back to 0 %"
    );
    for n in ["api@1.service", "api@2.service", "api@3.service"] {
        assert_eq!(
            version::running(&world.dir, n).as_deref(),
            Some("v2"),
            "{n}"
        );
    }
    assert!(!world.instances.contains_key(&4), "the canary stopped");
    assert!(!file.exists(), "its version file removed");
    let events = events(&board);
    assert_eq!(
        events.iter().filter(|e| *e == "analysis-passed").count(),
        3,
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "restarted").count(), 3);
    assert_eq!(board.history().last().unwrap().id, d.id);
    let stored = Store::new(&world.dir).history();
    assert_eq!(stored.last().unwrap().outcome, Some(Outcome::Promoted));
    assert!(Store::new(&world.dir).load_current().unwrap().is_none());
}

#[test]
fn a_canary_answering_a_fifth_with_500s_is_rolled_back_after_two_windows() {
    let mut world = World::new(&[1, 2, 3]);
    let (mut controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap();
    world.tick(&mut controller, 0.5);
    run_to_end(&mut world, &mut controller, &board, 1000, 20, 100);
    let d = board.current().unwrap();
    let Some(Outcome::Aborted { reason }) = &d.outcome else {
        panic!("{:?}", d.outcome);
    };
    assert!(reason.contains("2 of 2 in a row"), "{reason}");
    assert!(reason.contains("error_ratio 0.2000 > 0.0500"), "{reason}");
    let analysis = d.last_analysis.as_ref().unwrap();
    assert_eq!(analysis.verdict, Verdict::Fail);
    assert_eq!(world.weight_bp, 0, "every client back on stable");
    assert_eq!(
        world.instances.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let failed_windows = events(&board)
        .iter()
        .filter(|e| *e == "analysis-failed")
        .count();
    assert_eq!(failed_windows, 2);
}

#[test]
fn a_canary_with_no_traffic_holds_and_is_never_promoted() {
    let mut world = World::new(&[1, 2, 3]);
    let (mut controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap();
    world.tick(&mut controller, 0.5);
    for _ in 0..120 {
        world.tick(&mut controller, 1.0);
    }
    let d = board.current().unwrap();
    assert!(d.in_progress());
    assert_eq!(d.phase, Phase::Stepping);
    assert_eq!(d.step, 0, "still the first step");
    let holds = d.decisions.iter().filter(|d| d.event == "hold").count();
    assert!(holds >= 10, "{holds} holds");
    let last = d.decisions.last().unwrap();
    assert!(
        last.message
            .contains("too few requests to judge: canary 0, stable 0"),
        "{}",
        last.message
    );
}

#[test]
fn a_canary_that_restarts_aborts_at_once() {
    let mut world = World::new(&[1, 2, 3]);
    let (mut controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap();
    world.tick(&mut controller, 0.5);
    world.traffic(1000, &[4], 0);
    world.tick(&mut controller, 1.0);
    assert_eq!(board.current().unwrap().phase, Phase::Stepping);
    let canary = world.instances.get_mut(&4).unwrap();
    canary.restarts += 1;
    canary.invocation += 1;
    world.tick(&mut controller, 0.5);
    let d = board.current().unwrap();
    assert_eq!(d.phase, Phase::Aborting);
    let Some(Outcome::Aborted { reason }) = &d.outcome else {
        panic!("{:?}", d.outcome);
    };
    assert!(
        reason.contains("api@4.service restarted (restarts 0 → 1"),
        "{reason}"
    );
    assert_eq!(world.weight_bp, 0);
    run_to_end(&mut world, &mut controller, &board, 0, 0, 10);
}

#[test]
fn blue_green_switches_at_once_and_a_rollback_switches_back_at_once() {
    let mut world = World::new(&[1, 2]);
    let (mut controller, board) = controller(&world);
    let mut bg = spec(Strategy::BlueGreen);
    bg.blue_green.keep_blue = Duration::from_secs(3600);
    board.submit(Request::Start(Box::new(bg))).unwrap();
    world.tick(&mut controller, 0.5);
    assert_eq!(
        world.instances.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "green as many as blue"
    );
    world.tick(&mut controller, 0.5);
    assert_eq!(world.weight_bp, 10_000, "every client on green");
    assert_eq!(board.current().unwrap().phase, Phase::Switched);
    board
        .submit(Request::Rollback {
            reason: "smoke test failed".into(),
        })
        .unwrap();
    let actions = world.tick(&mut controller, 0.5);
    assert!(matches!(&actions[0], Action::SetSplit { split, .. } if split.weight_bp == 0));
    assert_eq!(world.weight_bp, 0, "back on blue in the same tick");
    run_to_end(&mut world, &mut controller, &board, 0, 0, 10);
    let d = board.current().unwrap();
    assert!(
        matches!(&d.outcome, Some(Outcome::RolledBack { reason }) if reason == "smoke test failed")
    );
    assert_eq!(world.instances.keys().copied().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn blue_green_stops_blue_once_keep_blue_passed() {
    let mut world = World::new(&[1, 2]);
    let (mut controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::BlueGreen))))
        .unwrap();
    world.tick(&mut controller, 0.5);
    for _ in 0..6 {
        world.tick(&mut controller, 0.5);
    }
    let d = board.current().unwrap();
    assert_eq!(d.outcome, Some(Outcome::Promoted), "{:#?}", d.decisions);
    assert_eq!(world.instances.keys().copied().collect::<Vec<_>>(), [3, 4]);
    assert_eq!(
        version::running(&world.dir, "api@3.service").as_deref(),
        Some("v2")
    );
    // Later instances (the autoscaler's) get the promoted version.
    let stable = board.stable_versions();
    assert!(stable["api"].content.contains("LBPROXY_VERSION=\"v2\""));
}

#[test]
fn a_restarted_proxy_resumes_the_canary_at_its_weight() {
    let mut world = World::new(&[1, 2, 3]);
    {
        let (mut controller, board) = controller(&world);
        board
            .submit(Request::Start(Box::new(spec(Strategy::Canary))))
            .unwrap();
        world.tick(&mut controller, 0.5);
        world.traffic(1000, &[4], 0);
        world.tick(&mut controller, 1.0);
        assert_eq!(world.weight_bp, 1000);
    }
    world.weight_bp = 0;
    let (mut controller, board) = controller(&world);
    assert!(board.deploying("api"), "published before the first tick");
    let actions = world.tick(&mut controller, 0.5);
    assert!(matches!(&actions[0], Action::SetSplit { split, .. } if split.weight_bp == 1000));
    let d = board.current().unwrap();
    assert_eq!(d.phase, Phase::Stepping);
    assert_eq!(d.decisions.last().unwrap().event, "resumed");
    // An abort still finds its canary.
    board
        .submit(Request::Abort {
            reason: "enough".into(),
        })
        .unwrap();
    run_to_end(&mut world, &mut controller, &board, 0, 0, 10);
    assert_eq!(
        world.instances.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn a_second_start_is_refused_while_one_is_in_progress() {
    let world = World::new(&[1]);
    let (_controller, board) = controller(&world);
    board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap();
    let refused = board
        .submit(Request::Start(Box::new(spec(Strategy::Canary))))
        .unwrap_err();
    assert!(refused.contains("in progress"), "{refused}");
    let _ = VersionChange::Keep;
}

#[test]
fn an_idle_controller_asks_for_no_view() {
    let mut world = World::new(&[1, 2, 3]);
    let (mut controller, board) = controller(&world);
    let config = valid(CONFIG);
    assert!(!controller.applies_to(&config), "nothing to do");
    board
        .submit(Request::Start(Box::new(spec(Strategy::BlueGreen))))
        .unwrap();
    assert!(controller.applies_to(&config), "a request waits");
    world.tick(&mut controller, 0.5);
    assert!(controller.applies_to(&config), "a deployment runs");
    board
        .submit(Request::Abort {
            reason: "done".into(),
        })
        .unwrap();
    run_to_end(&mut world, &mut controller, &board, 0, 0, 10);
    assert!(!controller.applies_to(&config), "ended");
}
