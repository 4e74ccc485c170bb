//! MinAtar Breakout (`MinAtar/Breakout-v1` of the `minatar` package 1.0.15), bit-exact.
//!
//! # The game (Young & Tian 2019, `minatar/environments/breakout.py`)
//!
//! A 10×10 grid, row 0 at the top. The paddle moves along row 9; three rows of bricks fill rows
//! 1–3; the ball moves one cell diagonally per step, in direction `d`:
//! 0 = up-left `(−1, −1)`, 1 = up-right `(+1, −1)`, 2 = down-right `(+1, +1)`,
//! 3 = down-left `(−1, +1)` (as `(dx, dy)`). One step, in the package's order:
//!
//! 1. The paddle moves (left: `max(0, p − 1)`, right: `min(9, p + 1)`).
//! 2. The trail `(last_x, last_y)` becomes the ball's position; the target `(x', y')` is the
//!    ball's position plus `d`'s offsets.
//! 3. If `x'` is off the grid it is clamped and `d` mirrored horizontally (`[1, 0, 3, 2][d]`).
//! 4. Then the first that applies:
//!    * `y' < 0`: `y' = 0`, `d` mirrored vertically (`[3, 2, 1, 0][d]`).
//!    * a brick at `(x', y')`: if the previous step did not strike a brick, reward 1, the
//!      brick goes, `y'` = the old row and `d` is mirrored vertically; if it did, nothing
//!      happens and the ball moves *into* the brick (no reward, the brick stays).
//!    * `y' = 9`: if no brick is left, rows 1–3 are refilled; then if the paddle is under the
//!      ball's *old* column, `d` is mirrored vertically and `y'` = the old row; else if it is
//!      under `x'`, `d` becomes `[2, 3, 0, 1][d]` (straight back) and `y'` = the old row; else
//!      the episode terminates (the ball lies on row 9).
//! 5. The ball moves to `(x', y')`; the strike flag is kept only if step 4 found a brick.
//!
//! `reset` puts the ball on row 3 at column 0 moving down-right or at column 9 moving
//! down-left (`randint(2)`), the paddle at column 4 and full brick rows 1–3. There is no time
//! limit (the gym id registers none) and no difficulty ramping in Breakout (the package's
//! `ramping` argument is ignored by this game).
//!
//! # Actions, sticky actions and randomness
//!
//! `Discrete(3)`: 0 = no-op, 1 = left, 2 = right (the `-v1` ids' minimal action set; the
//! `-v0` ids' six actions add three no-ops). Before every step the game draws
//! `rand() < sticky_action_prob` (0.1) and, if true, repeats the previously *executed* action
//! instead. The executed action is **not** cleared by `reset`, seeded or not, exactly as in the
//! package (a new env starts with no-op). All draws come from one numpy `RandomState`
//! ([`Mt19937`]): `reset(Some(s))` replaces it with `RandomState(s)` (the gym wrapper's
//! `seed`), then `randint(2)` places the ball; each step draws one `rand()` (two words).
//! numpy accepts seeds below 2³² only; larger ones seed as `RandomState([lo, hi])` (the seed's
//! two 32-bit halves), an extension, so that distinct `u64` seeds stay distinct.
//!
//! # Observation
//!
//! The package's `bool` array of shape `(10, 10, 4)` (row, column, channel), channels
//! 0 = paddle, 1 = ball, 2 = trail, 3 = brick, flattened in C order to 400 `f32` values of 0 or
//! 1: the value of `(row, col, ch)` is at `(row·10 + col)·4 + ch`. Reward 1.0 per brick.

use super::mt19937::Mt19937;
use super::{Action, ActionSpace, Env, EnvError, Transition};

/// Length of Breakout's observation: 10 rows × 10 columns × 4 channels.
pub const BREAKOUT_OBS: usize = 400;

/// Grid side.
const SIZE: u8 = 10;
/// Last row and column.
const LAST: u8 = SIZE - 1;
/// A full row of bricks (bit `x` = column `x`).
const FULL_ROW: u16 = (1 << SIZE) - 1;
/// `(dx, dy)` of the four ball directions.
const DIRS: [(i8, i8); 4] = [(-1, -1), (1, -1), (1, 1), (-1, 1)];
/// Horizontal mirror (wall).
const MIRROR_X: [u8; 4] = [1, 0, 3, 2];
/// Vertical mirror (ceiling, brick, paddle hit under the ball's old column).
const MIRROR_Y: [u8; 4] = [3, 2, 1, 0];
/// Straight back (paddle hit under the ball's new column).
const REVERSE: [u8; 4] = [2, 3, 0, 1];
/// Channel indices of the observation.
const CH_PADDLE: usize = 0;
const CH_BALL: usize = 1;
const CH_TRAIL: usize = 2;
const CH_BRICK: usize = 3;

/// Settings of [`Breakout`]. `Default` is `MinAtar/Breakout-v1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakoutParams {
    /// Probability that a step repeats the previously executed action (the package's
    /// `sticky_action_prob`). Default 0.1.
    pub sticky_action_prob: f64,
    /// Truncate once this many steps were taken; `None` (the default, as the gym id) never
    /// truncates.
    pub max_episode_steps: Option<u32>,
    /// The paddle moves on one step in this many (steps 0, n, 2n, … since the last reset; on
    /// the others an executed left or right leaves it where it is; 0 counts as 1). Default 1,
    /// every step, as the package. Not in the package: a changed game, a slower paddle motor,
    /// for fine-tuning a policy trained on the nominal one (the Breakout firmware,
    /// `firmware-demo/breakout/`, uses 2). Draws from the generator are unchanged.
    pub paddle_period: u32,
}

impl Default for BreakoutParams {
    /// `MinAtar/Breakout-v1`: sticky actions 0.1, no time limit.
    fn default() -> Self {
        BreakoutParams {
            sticky_action_prob: 0.1,
            max_episode_steps: None,
            paddle_period: 1,
        }
    }
}

/// The game state of [`Breakout`] (the package's `Env` attributes). Coordinates are columns
/// (`x`) and rows (`y`) in `0..=9`, row 0 at the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakoutState {
    /// Ball column.
    pub ball_x: u8,
    /// Ball row.
    pub ball_y: u8,
    /// Ball direction: 0 up-left, 1 up-right, 2 down-right, 3 down-left.
    pub ball_dir: u8,
    /// Paddle column (the paddle is on row 9).
    pub paddle: u8,
    /// The ball's previous column (the trail channel).
    pub last_x: u8,
    /// The ball's previous row.
    pub last_y: u8,
    /// Bricks, one `u16` per row, bit `x` set = a brick in column `x`.
    pub bricks: [u16; 10],
    /// The previous step struck a brick (a brick right after it is not scored).
    pub strike: bool,
    /// The ball reached row 9 past the paddle.
    pub terminal: bool,
}

impl BreakoutState {
    /// The start of an episode: ball on row 3 at column 0 moving down-right
    /// (`right_side == false`) or at column 9 moving down-left, paddle at 4, bricks in rows 1–3.
    pub fn initial(right_side: bool) -> Self {
        let (ball_x, ball_dir) = if right_side { (LAST, 3) } else { (0, 2) };
        let mut bricks = [0u16; 10];
        bricks[1..4].fill(FULL_ROW);
        BreakoutState {
            ball_x,
            ball_y: 3,
            ball_dir,
            paddle: 4,
            last_x: ball_x,
            last_y: 3,
            bricks,
            strike: false,
            terminal: false,
        }
    }

    /// Number of bricks left.
    pub fn bricks_left(&self) -> u32 {
        self.bricks.iter().map(|r| r.count_ones()).sum()
    }

    fn brick(&self, x: u8, y: u8) -> bool {
        self.bricks[usize::from(y)] >> x & 1 == 1
    }
}

/// MinAtar Breakout, `Env<400>`, action space `Discrete(3)` (no-op, left, right).
#[derive(Clone, Debug)]
pub struct Breakout {
    params: BreakoutParams,
    state: BreakoutState,
    rng: Mt19937,
    /// The previously executed action (0..3), what a sticky step repeats.
    last_action: usize,
    elapsed_steps: u32,
    running: bool,
}

impl Default for Breakout {
    /// `MinAtar/Breakout-v1`.
    fn default() -> Self {
        Self::new(BreakoutParams::default())
    }
}

impl Breakout {
    /// A Breakout game with the given settings.
    ///
    /// Until the first `reset(Some(seed))` the generator is `RandomState(0)` (the package would
    /// draw OS entropy instead); `step` before any `reset` returns `NeedsReset`.
    pub fn new(params: BreakoutParams) -> Self {
        Breakout {
            params,
            state: BreakoutState::initial(false),
            rng: Mt19937::from_seed(0),
            last_action: 0,
            elapsed_steps: 0,
            running: false,
        }
    }

    /// The settings.
    pub fn params(&self) -> &BreakoutParams {
        &self.params
    }

    /// The game state.
    pub fn state(&self) -> &BreakoutState {
        &self.state
    }

    /// Overwrite the game state (e.g. to set up a corner case) and allow stepping; the
    /// elapsed-step count is kept. So that no later step can index off the grid, coordinates
    /// are clamped to `0..=9`, the ball's row to `0..=8` (it is on row 9 only once the episode
    /// ended), the direction taken modulo 4, bits above column 9 and bricks on row 9 cleared (a
    /// ball passing into one would leave the grid on the next step) and `terminal` ignored (it
    /// is `false`).
    pub fn set_state(&mut self, state: BreakoutState) {
        let mut s = state;
        s.ball_x = s.ball_x.min(LAST);
        s.ball_y = s.ball_y.min(LAST - 1);
        s.ball_dir &= 3;
        s.paddle = s.paddle.min(LAST);
        s.last_x = s.last_x.min(LAST);
        s.last_y = s.last_y.min(LAST);
        for row in s.bricks.iter_mut() {
            *row &= FULL_ROW;
        }
        s.bricks[usize::from(LAST)] = 0;
        s.terminal = false;
        self.state = s;
        self.running = true;
    }

    /// The action the last step executed (0..3): the one asked for, or, on a sticky step, the
    /// one executed before it.
    pub fn executed_action(&self) -> usize {
        self.last_action
    }

    /// Steps taken since the last `reset`.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The environment's generator (the package's `Environment.random`).
    pub fn rng(&self) -> &Mt19937 {
        &self.rng
    }

    /// The observation of the current state (see the module docs for the layout).
    pub fn obs(&self) -> [f32; BREAKOUT_OBS] {
        let s = &self.state;
        let at = |x: u8, y: u8, ch: usize| (usize::from(y) * 10 + usize::from(x)) * 4 + ch;
        let mut o = [0.0f32; BREAKOUT_OBS];
        o[at(s.ball_x, s.ball_y, CH_BALL)] = 1.0;
        o[at(s.paddle, LAST, CH_PADDLE)] = 1.0;
        o[at(s.last_x, s.last_y, CH_TRAIL)] = 1.0;
        for y in 0..SIZE {
            for x in 0..SIZE {
                if s.brick(x, y) {
                    o[at(x, y, CH_BRICK)] = 1.0;
                }
            }
        }
        o
    }

    /// One step of the game with the executed action (0 no-op, 1 left, 2 right); returns the
    /// reward (0 or 1): steps 1–5 of the module docs, tested in the package's order.
    fn advance(&mut self, action: usize) -> u32 {
        let period = self.params.paddle_period.max(1);
        let moves = self.elapsed_steps % period == 0;
        let s = &mut self.state;
        match if moves { action } else { 0 } {
            1 => s.paddle = s.paddle.saturating_sub(1),
            2 => s.paddle = (s.paddle + 1).min(LAST),
            _ => {}
        }
        s.last_x = s.ball_x;
        s.last_y = s.ball_y;
        let (dx, dy) = DIRS[usize::from(s.ball_dir)];
        // Signed, because the target may be −1 before clamping.
        let mut new_x = s.ball_x as i8 + dx;
        let new_y = s.ball_y as i8 + dy;

        if !(0..=LAST as i8).contains(&new_x) {
            new_x = new_x.clamp(0, LAST as i8);
            s.ball_dir = MIRROR_X[usize::from(s.ball_dir)];
        }
        let new_x = new_x as u8;
        let mut reward = 0;
        let mut strike_toggle = false;
        let new_y = if new_y < 0 {
            s.ball_dir = MIRROR_Y[usize::from(s.ball_dir)];
            0
        } else {
            // The ball is above row 9 while the episode runs (`set_state` keeps it there and
            // row 9 brick-free), so `new_y ≤ 9`.
            let new_y = new_y as u8;
            if s.brick(new_x, new_y) {
                strike_toggle = true;
                if s.strike {
                    // A second brick in a row: the ball passes into it, unscored.
                    new_y
                } else {
                    reward = 1;
                    s.strike = true;
                    s.bricks[usize::from(new_y)] &= !(1 << new_x);
                    s.ball_dir = MIRROR_Y[usize::from(s.ball_dir)];
                    s.last_y
                }
            } else if new_y == LAST {
                if s.bricks_left() == 0 {
                    s.bricks[1..4].fill(FULL_ROW);
                }
                if s.ball_x == s.paddle {
                    s.ball_dir = MIRROR_Y[usize::from(s.ball_dir)];
                    s.last_y
                } else if new_x == s.paddle {
                    s.ball_dir = REVERSE[usize::from(s.ball_dir)];
                    s.last_y
                } else {
                    s.terminal = true;
                    new_y
                }
            } else {
                new_y
            }
        };
        if !strike_toggle {
            s.strike = false;
        }
        s.ball_x = new_x;
        s.ball_y = new_y;
        reward
    }
}

impl Env<BREAKOUT_OBS> for Breakout {
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Discrete(3)
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; BREAKOUT_OBS] {
        if let Some(seed) = seed {
            self.rng = match u32::try_from(seed) {
                Ok(s) => Mt19937::from_seed(s),
                Err(_) => Mt19937::from_key(&[seed as u32, (seed >> 32) as u32]),
            };
        }
        // `ball_start = self.random.randint(2)`; `last_action` is deliberately kept.
        let right_side = self.rng.randint(2) == 1;
        self.state = BreakoutState::initial(right_side);
        self.elapsed_steps = 0;
        self.running = true;
        self.obs()
    }

    fn step(&mut self, action: Action<'_>) -> Result<Transition<BREAKOUT_OBS>, EnvError> {
        let asked = match action {
            Action::Discrete(a) if a < 3 => a,
            _ => return Err(EnvError::InvalidAction),
        };
        if !self.running {
            return Err(EnvError::NeedsReset);
        }
        // `Environment.act`: one `rand()` per step, even when the probability is 0.
        let executed = if self.rng.next_f64() < self.params.sticky_action_prob {
            self.last_action
        } else {
            asked
        };
        self.last_action = executed;
        let reward = self.advance(executed);
        self.elapsed_steps = self.elapsed_steps.saturating_add(1);
        let terminated = self.state.terminal;
        let truncated = self
            .params
            .max_episode_steps
            .is_some_and(|m| self.elapsed_steps >= m);
        self.running = !(terminated || truncated);
        Ok(Transition {
            obs: self.obs(),
            reward: reward as f32,
            terminated,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_sticky() -> Breakout {
        Breakout::new(BreakoutParams {
            sticky_action_prob: 0.0,
            max_episode_steps: None,
            ..BreakoutParams::default()
        })
    }

    #[test]
    fn needs_reset_and_invalid_actions() {
        let mut env = Breakout::default();
        assert_eq!(env.action_space(), ActionSpace::Discrete(3));
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::NeedsReset));
        env.reset(Some(0));
        assert_eq!(env.step(Action::Discrete(3)), Err(EnvError::InvalidAction));
        assert_eq!(
            env.step(Action::Discrete(usize::MAX)),
            Err(EnvError::InvalidAction)
        );
        assert_eq!(
            env.step(Action::Continuous(&[1.0])),
            Err(EnvError::InvalidAction)
        );
        assert!(env.step(Action::Discrete(2)).is_ok());
    }

    #[test]
    fn reset_layout() {
        let mut env = Breakout::default();
        let o = env.reset(Some(0));
        let s = *env.state();
        assert_eq!(s.ball_y, 3);
        assert!(s == BreakoutState::initial(false) || s == BreakoutState::initial(true));
        assert_eq!(s.bricks_left(), 30);
        // One paddle (row 9, column 4), one ball, one trail on the ball, 30 bricks.
        assert_eq!(o[(9 * 10 + 4) * 4 + CH_PADDLE], 1.0);
        for ch in 0..4 {
            let n = (0..100).filter(|c| o[c * 4 + ch] == 1.0).count();
            assert_eq!(n, if ch == CH_BRICK { 30 } else { 1 }, "channel {ch}");
        }
        let ball = (usize::from(s.ball_y) * 10 + usize::from(s.ball_x)) * 4;
        assert_eq!((o[ball + CH_BALL], o[ball + CH_TRAIL]), (1.0, 1.0));
        assert!(o.iter().all(|&v| v == 0.0 || v == 1.0));
    }

    #[test]
    fn both_start_sides_occur() {
        let mut env = Breakout::default();
        let mut sides = [false; 2];
        for seed in 0..20 {
            env.reset(Some(seed));
            sides[usize::from(env.state().ball_x == 9)] = true;
        }
        assert_eq!(sides, [true, true]);
    }

    #[test]
    fn paddle_clamps_at_walls() {
        let mut env = no_sticky();
        env.reset(Some(1));
        for _ in 0..3 {
            env.step(Action::Discrete(1)).unwrap();
        }
        assert_eq!(env.state().paddle, 1);
        env.step(Action::Discrete(1)).unwrap();
        env.step(Action::Discrete(1)).unwrap();
        assert_eq!(env.state().paddle, 0);
        let mut s = *env.state();
        s.paddle = 9;
        s.ball_x = 5;
        s.ball_y = 5;
        s.ball_dir = 0;
        env.set_state(s);
        env.step(Action::Discrete(2)).unwrap();
        assert_eq!(env.state().paddle, 9);
    }

    #[test]
    fn brick_hit_scores_once_and_bounces() {
        let mut env = no_sticky();
        env.reset(Some(0));
        let mut s = BreakoutState::initial(false);
        // Ball on row 5 moving up-right into the empty row 4, then into row 3's brick at x = 6.
        s.ball_x = 4;
        s.ball_y = 5;
        s.ball_dir = 1;
        env.set_state(s);
        let t = env.step(Action::Discrete(0)).unwrap();
        assert_eq!((t.reward, env.state().ball_y), (0.0, 4));
        let t = env.step(Action::Discrete(0)).unwrap();
        let s = *env.state();
        assert_eq!(t.reward, 1.0);
        assert_eq!(s.bricks_left(), 29);
        assert_eq!(s.bricks[3] >> 6 & 1, 0);
        // Back on row 4, column 6, now moving down-right.
        assert_eq!((s.ball_x, s.ball_y, s.ball_dir, s.strike), (6, 4, 2, true));
    }

    #[test]
    fn second_brick_in_a_row_is_entered_unscored() {
        let mut env = no_sticky();
        env.reset(Some(0));
        let mut s = BreakoutState::initial(false);
        // Just struck a brick; the next target (x 3, row 2) holds a brick too.
        s.bricks[3] = 0;
        s.ball_x = 2;
        s.ball_y = 3;
        s.ball_dir = 1;
        s.strike = true;
        env.set_state(s);
        let t = env.step(Action::Discrete(0)).unwrap();
        let s = *env.state();
        assert_eq!(t.reward, 0.0);
        assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (3, 2, 1));
        assert_eq!(s.bricks_left(), 20);
        assert!(s.strike);
        // Ball and brick share a cell in the observation.
        let cell = (2 * 10 + 3) * 4;
        assert_eq!((t.obs[cell + CH_BALL], t.obs[cell + CH_BRICK]), (1.0, 1.0));
    }

    #[test]
    fn paddle_bounces_and_misses() {
        let mut env = no_sticky();
        env.reset(Some(0));
        let mut s = BreakoutState::initial(false);
        s.ball_x = 3;
        s.ball_y = 8;
        s.ball_dir = 2; // down-right, target column 4
                        // Under the old column: vertical mirror (up-right).
        s.paddle = 3;
        env.set_state(s);
        env.step(Action::Discrete(0)).unwrap();
        let r = *env.state();
        assert_eq!((r.ball_x, r.ball_y, r.ball_dir), (4, 8, 1));
        // Under the new column: straight back (up-left).
        s.paddle = 4;
        env.set_state(s);
        env.step(Action::Discrete(0)).unwrap();
        let r = *env.state();
        assert_eq!((r.ball_x, r.ball_y, r.ball_dir), (4, 8, 0));
        // Elsewhere: the ball drops onto row 9 and the episode terminates.
        s.paddle = 7;
        env.set_state(s);
        let t = env.step(Action::Discrete(0)).unwrap();
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.obs[(9 * 10 + 4) * 4 + CH_BALL], 1.0);
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::NeedsReset));
    }

    #[test]
    fn wall_refills_when_the_ball_reaches_the_bottom() {
        let mut env = no_sticky();
        env.reset(Some(0));
        let mut s = BreakoutState::initial(false);
        s.bricks = [0; 10];
        s.ball_x = 5;
        s.ball_y = 7;
        s.ball_dir = 3;
        s.paddle = 4;
        env.set_state(s);
        env.step(Action::Discrete(0)).unwrap();
        assert_eq!(env.state().bricks_left(), 0, "row 8: no refill yet");
        env.step(Action::Discrete(0)).unwrap();
        assert_eq!(env.state().bricks_left(), 30);
    }

    #[test]
    fn corner_bounce_mirrors_both_ways() {
        let mut env = no_sticky();
        env.reset(Some(0));
        let mut s = BreakoutState::initial(false);
        s.bricks = [0; 10];
        s.ball_x = 0;
        s.ball_y = 0;
        s.ball_dir = 0;
        env.set_state(s);
        env.step(Action::Discrete(0)).unwrap();
        let r = *env.state();
        assert_eq!((r.ball_x, r.ball_y, r.ball_dir), (0, 0, 2));
    }

    #[test]
    fn sticky_actions_repeat_the_executed_action() {
        // With probability 1 every step repeats the first executed action (no-op on a new env),
        // whatever is asked.
        let mut env = Breakout::new(BreakoutParams {
            sticky_action_prob: 1.0,
            max_episode_steps: None,
            ..BreakoutParams::default()
        });
        env.reset(Some(3));
        env.step(Action::Discrete(2)).unwrap();
        assert_eq!((env.executed_action(), env.state().paddle), (0, 4));
        // At 0.1 some steps are sticky, most are not; the executed action survives a reset.
        let mut env = Breakout::default();
        env.reset(Some(5));
        let (mut sticky, mut steps) = (0, 0);
        for i in 0..2000usize {
            let asked = i % 3;
            let before = env.executed_action();
            match env.step(Action::Discrete(asked)) {
                Ok(t) => {
                    steps += 1;
                    let e = env.executed_action();
                    assert!(e == asked || e == before);
                    sticky += usize::from(e != asked);
                    if t.terminated {
                        let kept = env.executed_action();
                        env.reset(None);
                        assert_eq!(env.executed_action(), kept);
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        // Asked differs from the previous action 2000 times; ~10 % of them are sticky.
        assert_eq!(steps, 2000);
        assert!((100..300).contains(&sticky), "{sticky}");
    }

    #[test]
    fn a_slower_paddle_moves_on_every_other_step() {
        let mut env = Breakout::new(BreakoutParams {
            sticky_action_prob: 0.0,
            paddle_period: 2,
            ..BreakoutParams::default()
        });
        env.reset(Some(0));
        let mut at = [0u8; 4];
        for p in at.iter_mut() {
            env.step(Action::Discrete(2)).unwrap();
            *p = env.state().paddle;
        }
        // Steps 0 and 2 move it right, steps 1 and 3 leave it; a reset restarts the count.
        assert_eq!(at, [5, 5, 6, 6]);
        env.reset(None);
        env.step(Action::Discrete(1)).unwrap();
        assert_eq!(env.state().paddle, 3);
        // Period 1 (the default) and 0 move on every step.
        for period in [0, 1] {
            let mut env = Breakout::new(BreakoutParams {
                sticky_action_prob: 0.0,
                paddle_period: period,
                ..BreakoutParams::default()
            });
            env.reset(Some(0));
            env.step(Action::Discrete(2)).unwrap();
            env.step(Action::Discrete(2)).unwrap();
            assert_eq!(env.state().paddle, 6);
        }
    }

    #[test]
    fn truncates_when_asked() {
        let mut env = Breakout::new(BreakoutParams {
            sticky_action_prob: 0.1,
            max_episode_steps: Some(2),
            ..BreakoutParams::default()
        });
        env.reset(Some(0));
        assert!(!env.step(Action::Discrete(0)).unwrap().truncated);
        assert!(env.step(Action::Discrete(0)).unwrap().truncated);
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::NeedsReset));
    }

    #[test]
    fn set_state_keeps_indices_on_the_grid() {
        let mut env = Breakout::default();
        env.reset(Some(0));
        env.set_state(BreakoutState {
            ball_x: 200,
            ball_y: 200,
            ball_dir: 7,
            paddle: 99,
            last_x: 10,
            last_y: 10,
            bricks: [u16::MAX; 10],
            strike: true,
            terminal: true,
        });
        let s = *env.state();
        assert_eq!(
            (s.ball_x, s.ball_y, s.ball_dir, s.paddle, s.last_x, s.last_y),
            (9, 8, 3, 9, 9, 9)
        );
        assert_eq!(s.bricks_left(), 90);
        for a in [0, 1, 2, 0, 1] {
            if env.step(Action::Discrete(a)).is_err() {
                break;
            }
        }
    }
}
