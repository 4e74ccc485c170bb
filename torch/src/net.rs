//! Actor-critic networks on libtorch tensors: MLPs (shared or separate trunks), the MinAtar
//! net (conv 16×3×3 → fc 128), the small MinAtar net acktr-core also holds (conv 4×4×4/2 →
//! 32-32) and the Nature CNN (32×8×8/4, 64×4×4/2, 64×3×3/1, fc 512).
//!
//! Parameters are plain tensors in a flat list of [`Layer`]s. Each layer knows the *input
//! group* it reads: layers that read the same tensor share K-FAC's `Ā` (as in acktr-core).
//! Forward returns the policy outputs, the values, each group's input (detached; K-FAC's `a`)
//! and each layer's pre-activation (attached; K-FAC's `g` comes from its gradient).

use acktr_core::{Activation, HeadKind};
use acktr_host::error::{HostError, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The network family and its sizes (saved in the run config and checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Arch {
    /// Fully connected trunks.
    Mlp {
        /// Hidden layer widths, e.g. `[64, 64]`.
        hidden: Vec<usize>,
        /// Separate actor and critic trunks (the paper's MuJoCo layout) or one shared trunk.
        separate: bool,
        /// Hidden nonlinearity.
        activation: Activation,
    },
    /// MinAtar: conv 16×3×3 stride 1 → fc 128, ReLU, input `C×10×10`.
    MinAtar,
    /// MinAtar sized for a microcontroller: conv 4 filters 4×4 stride 2 (4×4 outputs on
    /// 10×10), ReLU, flattened channel-major (64 features) → one trunk of two dense layers
    /// 32, 32 (ReLU) shared by both heads. acktr-core's `ConvEncoder<C, 4, 4, 2, …>` under an
    /// `ActorCritic<64, 32, P, 1, …>` is the same net, layer for layer (the test
    /// `torch/tests/conv_core.rs`). Input `C×H×W` with `(H − 4)` and `(W − 4)` even, so no
    /// edge row or column goes unread (the core's geometry check).
    MinAtarSmall,
    /// Nature DQN CNN: conv 32×8×8/4, 64×4×4/2, 64×3×3/1 → fc 512, ReLU, input `4×84×84` in
    /// `[0, 255]` (scaled by 1/255 inside the net).
    Nature,
}

/// Convolution geometry (square kernels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv {
    /// Kernel size.
    pub k: i64,
    /// Stride.
    pub stride: i64,
    /// Zero padding.
    pub padding: i64,
}

/// One weight layer: `s = W a + b` (linear, `W: O×I`) or `s = conv(a, W) + b` (`W: O×C×k×k`).
#[derive(Debug)]
pub struct Layer {
    /// Weights.
    pub w: Tensor,
    /// Biases.
    pub b: Tensor,
    /// `Some` for a convolution.
    pub conv: Option<Conv>,
    /// Input group (index into [`Forward::inputs`]).
    pub group: usize,
}

impl Layer {
    /// Output units `O`.
    pub fn outputs(&self) -> i64 {
        self.w.size()[0]
    }
    /// Columns of `[W | b]` minus one: `I` (linear) or `C·k·k` (conv).
    pub fn fan_in(&self) -> i64 {
        self.w.size()[1..].iter().product()
    }
}

/// What a forward pass keeps.
pub struct Forward {
    /// Policy outputs `[B, P]` (logits or means).
    pub z: Tensor,
    /// Values `[B]`.
    pub v: Tensor,
    /// Input of each group, detached (`[B, I]` or `[B, C, H, W]`).
    pub inputs: Vec<Tensor>,
    /// Pre-activation of each layer, attached to the graph.
    pub pre: Vec<Tensor>,
}

/// An actor-critic on tensors.
#[derive(Debug)]
pub struct TorchNet {
    /// Family and sizes.
    pub arch: Arch,
    /// Observation shape (`[obs]` or `[C, H, W]`).
    pub obs_shape: Vec<i64>,
    /// Policy distribution.
    pub head: HeadKind,
    /// All weight layers: trunk layers (trunk by trunk, input to output), then the policy head,
    /// then the value head.
    pub layers: Vec<Layer>,
    /// Layers of each trunk, as index ranges into `layers`.
    pub trunks: Vec<std::ops::Range<usize>>,
    /// Gaussian log-std `[P]` (zeros and unused for the categorical head).
    pub log_std: Tensor,
    /// Number of input groups.
    pub groups: usize,
    activation: Activation,
    input_scale: f64,
}

fn act(a: Activation, s: &Tensor) -> Tensor {
    match a {
        Activation::Tanh => s.tanh(),
        Activation::Relu => s.relu(),
        Activation::Identity => s.shallow_clone(),
    }
}

/// Orthogonal initialisation with `gain` of a `rows × cols` matrix (QR of a normal matrix).
fn orthogonal(rows: i64, cols: i64, gain: f64, device: Device) -> Tensor {
    let (r, c) = (rows.max(cols), rows.min(cols));
    let m = Tensor::randn([r, c], (Kind::Float, Device::Cpu));
    let (q, rr) = Tensor::linalg_qr(&m, "reduced");
    let q = q * rr.diagonal(0, 0, 1).sign().unsqueeze(0);
    let q = if rows < cols { q.tr() } else { q };
    (q * gain).contiguous().to_device(device)
}

impl TorchNet {
    /// Build a freshly initialised net (orthogonal, hidden gain √2, policy 0.01, value 1, zero
    /// biases, as the reference ACKTR) for `obs_shape` and `outputs` policy outputs.
    pub fn new(
        arch: Arch,
        obs_shape: &[usize],
        head: HeadKind,
        outputs: usize,
        device: Device,
    ) -> Result<Self> {
        let obs: Vec<i64> = obs_shape.iter().map(|&d| d as i64).collect();
        let g = std::f64::consts::SQRT_2;
        let mut layers = Vec::new();
        let mut trunks = Vec::new();
        let mut groups = 1; // group 0: the observation
        let linear = |i: i64, o: i64, gain: f64, group: usize| Layer {
            w: orthogonal(o, i, gain, device),
            b: Tensor::zeros([o], (Kind::Float, device)),
            conv: None,
            group,
        };
        let conv = |c: i64, o: i64, k: i64, stride: i64, group: usize| Layer {
            w: orthogonal(o, c * k * k, g, device).view([o, c, k, k]),
            b: Tensor::zeros([o], (Kind::Float, device)),
            conv: Some(Conv {
                k,
                stride,
                padding: 0,
            }),
            group,
        };
        let (activation, input_scale, n_trunks) = match &arch {
            Arch::Mlp {
                hidden,
                separate,
                activation,
            } => {
                if obs.len() != 1 {
                    return Err(HostError::UnsupportedSpace(format!(
                        "an MLP needs flat observations, got shape {obs_shape:?}; use --arch minatar or nature"
                    )));
                }
                if hidden.is_empty() || hidden.contains(&0) {
                    return Err(HostError::InvalidSetting(format!(
                        "hidden sizes must be non-empty and positive, got {hidden:?}"
                    )));
                }
                (*activation, 1.0, if *separate { 2 } else { 1 })
            }
            Arch::MinAtar | Arch::MinAtarSmall | Arch::Nature => {
                if obs.len() != 3 {
                    return Err(HostError::UnsupportedSpace(format!(
                        "a conv net needs C×H×W observations, got shape {obs_shape:?}"
                    )));
                }
                (
                    Activation::Relu,
                    if arch == Arch::Nature {
                        1.0 / 255.0
                    } else {
                        1.0
                    },
                    1,
                )
            }
        };
        let mut trunk_out_groups = Vec::new();
        for _ in 0..n_trunks {
            let start = layers.len();
            let mut group = 0;
            match &arch {
                Arch::Mlp { hidden, .. } => {
                    let mut i = obs[0];
                    for &h in hidden {
                        layers.push(linear(i, h as i64, g, group));
                        group = groups;
                        groups += 1;
                        i = h as i64;
                    }
                }
                Arch::MinAtar => {
                    let (c, h, w) = (obs[0], obs[1], obs[2]);
                    if h < 3 || w < 3 {
                        return Err(HostError::UnsupportedSpace(format!(
                            "MinAtar net needs H, W ≥ 3, got {obs_shape:?}"
                        )));
                    }
                    layers.push(conv(c, 16, 3, 1, group));
                    group = groups;
                    groups += 1;
                    layers.push(linear(16 * (h - 2) * (w - 2), 128, g, group));
                    group = groups;
                    groups += 1;
                }
                Arch::MinAtarSmall => {
                    let (c, h, w) = (obs[0], obs[1], obs[2]);
                    let (filters, k, stride) = (4, 4, 2);
                    if h < k || w < k || (h - k) % stride != 0 || (w - k) % stride != 0 {
                        return Err(HostError::UnsupportedSpace(format!(
                            "the small MinAtar net (4×4 kernels at stride 2) needs H, W ≥ 4 \
                             with H − 4 and W − 4 even, got {obs_shape:?}"
                        )));
                    }
                    layers.push(conv(c, filters, k, stride, group));
                    group = groups;
                    groups += 1;
                    let features = filters * ((h - k) / stride + 1) * ((w - k) / stride + 1);
                    let mut i = features;
                    for width in [32, 32] {
                        layers.push(linear(i, width, g, group));
                        group = groups;
                        groups += 1;
                        i = width;
                    }
                }
                Arch::Nature => {
                    let (c, mut h, mut w) = (obs[0], obs[1], obs[2]);
                    let mut ch = c;
                    for (o, k, s) in [(32, 8, 4), (64, 4, 2), (64, 3, 1)] {
                        if h < k || w < k {
                            return Err(HostError::UnsupportedSpace(format!(
                                "Nature CNN needs larger images than {obs_shape:?}"
                            )));
                        }
                        layers.push(conv(ch, o, k, s, group));
                        group = groups;
                        groups += 1;
                        h = (h - k) / s + 1;
                        w = (w - k) / s + 1;
                        ch = o;
                    }
                    layers.push(linear(ch * h * w, 512, g, group));
                    group = groups;
                    groups += 1;
                }
            }
            trunks.push(start..layers.len());
            trunk_out_groups.push(group);
        }
        let hidden_out = layers.last().map(|l| l.outputs()).unwrap_or(0);
        layers.push(linear(
            hidden_out,
            outputs as i64,
            0.01,
            trunk_out_groups[0],
        ));
        layers.push(linear(hidden_out, 1, 1.0, trunk_out_groups[n_trunks - 1]));
        let log_std = Tensor::zeros([outputs as i64], (Kind::Float, device));
        let net = Self {
            arch,
            obs_shape: obs,
            head,
            layers,
            trunks,
            log_std,
            groups,
            activation,
            input_scale,
        };
        net.set_requires_grad(true);
        Ok(net)
    }

    /// All trainable tensors: every layer's `W`, `b` (in layer order), then the log-std.
    pub fn params(&self) -> Vec<&Tensor> {
        let mut p: Vec<&Tensor> = self.layers.iter().flat_map(|l| [&l.w, &l.b]).collect();
        p.push(&self.log_std);
        p
    }

    fn set_requires_grad(&self, on: bool) {
        for p in self.params() {
            let _ = p.shallow_clone().set_requires_grad(on);
        }
    }

    /// Hidden nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Whether every layer is fully connected (an MLP).
    pub fn is_mlp(&self) -> bool {
        self.layers.iter().all(|l| l.conv.is_none())
    }

    /// Index of the policy head in `layers`.
    pub fn pi_index(&self) -> usize {
        self.layers.len() - 2
    }

    /// Index of the value head in `layers`.
    pub fn v_index(&self) -> usize {
        self.layers.len() - 1
    }

    /// Forward a batch `[B, obs...]`.
    pub fn forward(&self, obs: &Tensor) -> Forward {
        let x = if self.input_scale != 1.0 {
            obs * self.input_scale
        } else {
            obs.shallow_clone()
        };
        let mut inputs: Vec<Option<Tensor>> = (0..self.groups).map(|_| None).collect();
        let mut pre: Vec<Option<Tensor>> = (0..self.layers.len()).map(|_| None).collect();
        let mut outs = Vec::new();
        for range in &self.trunks {
            let mut h = x.shallow_clone();
            for li in range.clone() {
                let s = self.apply(li, &h, &mut inputs);
                h = act(self.activation, &s);
                pre[li] = Some(s);
            }
            outs.push(h);
        }
        let (pi, vi) = (self.pi_index(), self.v_index());
        let z = self.apply(pi, &outs[0], &mut inputs);
        let v = self.apply(vi, &outs[outs.len() - 1], &mut inputs);
        pre[pi] = Some(z.shallow_clone());
        pre[vi] = Some(v.shallow_clone());
        Forward {
            z,
            v: v.squeeze_dim(1),
            inputs: inputs
                .into_iter()
                .map(|t| t.unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, Device::Cpu))))
                .collect(),
            pre: pre
                .into_iter()
                .map(|t| t.unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, Device::Cpu))))
                .collect(),
        }
    }

    fn apply(&self, li: usize, a: &Tensor, inputs: &mut [Option<Tensor>]) -> Tensor {
        let l = &self.layers[li];
        let a = match l.conv {
            None if a.dim() > 2 => a.flatten(1, -1),
            _ => a.shallow_clone(),
        };
        if inputs[l.group].is_none() {
            inputs[l.group] = Some(a.detach());
        }
        match l.conv {
            Some(c) => a.conv2d(
                &l.w,
                Some(&l.b),
                [c.stride, c.stride],
                [c.padding, c.padding],
                [1, 1],
                1,
            ),
            None => a.linear(&l.w, Some(&l.b)),
        }
    }

    /// A second handle to the same parameters (no copy; for a job on another thread, which
    /// must own what it reads).
    pub fn shallow_clone(&self) -> Self {
        Self {
            arch: self.arch.clone(),
            obs_shape: self.obs_shape.clone(),
            head: self.head,
            layers: self
                .layers
                .iter()
                .map(|l| Layer {
                    w: l.w.shallow_clone(),
                    b: l.b.shallow_clone(),
                    conv: l.conv,
                    group: l.group,
                })
                .collect(),
            trunks: self.trunks.clone(),
            log_std: self.log_std.shallow_clone(),
            groups: self.groups,
            activation: self.activation,
            input_scale: self.input_scale,
        }
    }

    /// Move every tensor to `device`.
    pub fn to_device(&mut self, device: Device) {
        self.set_requires_grad(false);
        for l in &mut self.layers {
            l.w = l.w.to_device(device);
            l.b = l.b.to_device(device);
        }
        self.log_std = self.log_std.to_device(device);
        self.set_requires_grad(true);
    }

    /// Device of the parameters.
    pub fn device(&self) -> Device {
        self.log_std.device()
    }
}
