//! The libtorch backend as an [`Agent`].

use acktr_core::{
    Activation, Collective, Config, ConvSpec, HeadKind, PolicyArch, SingleProcess, UpdateStats,
};
use acktr_host::agent::{blob, bytes_f32, f32_bytes, Agent, HostRollout};
use acktr_host::error::{HostError, Result};
use tch::{Device, Kind, Tensor};

use crate::learner::{Batch, FisherNoise, TorchLearner};
use crate::net::{Arch, TorchNet};

/// A [`TorchLearner`] as an [`Agent`].
pub struct TorchAgent {
    /// The learner.
    pub learner: TorchLearner,
    outputs: usize,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Vec::<f32>::try_from(
        t.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )
    .map_err(|e| HostError::InvalidSetting(format!("tensor copy: {e}")))
}

impl TorchAgent {
    /// A fresh network on `device`; `tch::manual_seed(seed)` seeds initialisation and sampling.
    pub fn new(
        config: Config,
        arch: Arch,
        obs_shape: &[usize],
        head: HeadKind,
        outputs: usize,
        device: Device,
        seed: u64,
    ) -> Result<Self> {
        tch::manual_seed(seed as i64);
        let net = TorchNet::new(arch, obs_shape, head, outputs, device)?;
        Ok(Self {
            learner: TorchLearner::new(config, net)?,
            outputs,
        })
    }

    fn obs_tensor(&self, obs: &[f32], n: usize) -> Tensor {
        let net = &self.learner.net;
        let mut shape = vec![n as i64];
        shape.extend_from_slice(&net.obs_shape);
        Tensor::from_slice(obs)
            .view(shape.as_slice())
            .to_device(net.device())
    }
}

impl Agent for TorchAgent {
    fn act(&mut self, obs: &[f32], n: usize, deterministic: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let x = self.obs_tensor(obs, n);
        let net = &self.learner.net;
        let (a, v) = tch::no_grad(|| {
            let fw = net.forward(&x);
            let a = match net.head {
                HeadKind::Categorical => {
                    let idx = if deterministic {
                        fw.z.argmax(-1, true)
                    } else {
                        crate::learner::sample_categorical(&fw.z.softmax(-1, Kind::Float))
                    };
                    Tensor::zeros_like(&fw.z).scatter_value(1, &idx, 1.0)
                }
                HeadKind::Gaussian => {
                    if deterministic {
                        fw.z.shallow_clone()
                    } else {
                        &fw.z + fw.z.randn_like() * net.log_std.exp()
                    }
                }
            };
            (a, fw.v)
        });
        Ok((to_vec(&a)?, to_vec(&v)?))
    }

    fn values(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let x = self.obs_tensor(obs, n);
        let v = tch::no_grad(|| self.learner.net.forward(&x).v);
        to_vec(&v)
    }

    fn update(&mut self, r: &HostRollout) -> Result<UpdateStats> {
        self.update_data_parallel(r, &mut SingleProcess)
    }

    fn update_data_parallel(
        &mut self,
        r: &HostRollout,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats> {
        let n = r.len();
        let device = self.learner.net.device();
        let acts = Tensor::from_slice(&r.actions).view([n as i64, self.outputs as i64]);
        let actions = match self.learner.net.head {
            HeadKind::Categorical => acts.argmax(-1, false),
            HeadKind::Gaussian => acts,
        };
        let batch = Batch {
            obs: self.obs_tensor(&r.obs, n),
            actions: actions.to_device(device),
            advantages: Tensor::from_slice(&r.advantages).to_device(device),
            returns: Tensor::from_slice(&r.returns).to_device(device),
        };
        self.learner
            .update_data_parallel(&batch, FisherNoise::Draw, coll)
    }

    fn join_data_parallel(
        &mut self,
        coll: &mut dyn Collective,
        sampler_seed: Option<u64>,
    ) -> Result<()> {
        if coll.ranks() > 1 {
            let l = &mut self.learner;
            // The ranks must hold the same counters (the same checkpoint, or none): compare,
            // as the broadcast below would not notice.
            let mine = [
                f64::from(l.updates),
                f64::from(u8::from(l.kfac.has_stats())),
            ];
            let mut flags = mine;
            coll.all_reduce_sum_f64(&mut flags)?;
            let r = f64::from(coll.ranks());
            if flags != [mine[0] * r, mine[1] * r] {
                return Err(HostError::Distributed(
                    "the ranks start from different update counts (different checkpoints?)".into(),
                ));
            }
            // Rank 0's whole training state: weights, optimizer state, factors.
            let params = l.net.params();
            let mut parts: Vec<Tensor> = params.iter().map(|p| p.detach().reshape([-1])).collect();
            parts.extend(l.velocity.iter().map(|u| u.reshape([-1])));
            parts.push(l.kfac.stats_flat().shallow_clone());
            let mut buf = crate::learner::to_cpu_vec(&Tensor::cat(&parts, 0))?;
            coll.broadcast(&mut |f: &mut dyn FnMut(&mut [f32])| f(&mut buf))?;
            let device = l.net.device();
            let mut at = 0;
            let mut take = |like: &Tensor| {
                let len = like.numel();
                let t = Tensor::from_slice(&buf[at..at + len])
                    .view(like.size().as_slice())
                    .to_device(device);
                at += len;
                t
            };
            tch::no_grad(|| {
                for p in &params {
                    let v = take(p);
                    p.shallow_clone().copy_(&v);
                }
            });
            for u in l.velocity.iter_mut() {
                *u = take(u);
            }
            // The factors last; the inverses follow from them at the next natural update.
            let factors = buf.len() - l.kfac.stats_flat().numel();
            l.kfac.set_stats_flat(&buf[factors..])?;
        }
        if let Some(seed) = sampler_seed {
            // Every draw of this process (actions, Fisher targets) comes from libtorch's
            // generator.
            tch::manual_seed(seed as i64);
        }
        Ok(())
    }

    fn config(&self) -> Config {
        self.learner.config
    }

    fn set_config(&mut self, config: Config) -> Result<()> {
        config.validate()?;
        crate::learner::check_supported(&config)?;
        self.learner.config = config;
        Ok(())
    }

    fn updates(&self) -> u32 {
        self.learner.updates
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let l = &self.learner;
        let mut out = vec![(
            "torch.updates".to_string(),
            l.updates.to_le_bytes().to_vec(),
        )];
        for (i, p) in l.net.params().iter().enumerate() {
            out.push((format!("torch.param.{i}"), f32_bytes(&to_vec(p)?)));
        }
        for (i, u) in l.velocity.iter().enumerate() {
            out.push((format!("torch.velocity.{i}"), f32_bytes(&to_vec(u)?)));
        }
        for i in 0..l.net.groups {
            if let Some(a) = l.kfac.a(i) {
                out.push((format!("torch.kfac.a.{i}"), f32_bytes(&to_vec(a)?)));
            }
        }
        for i in 0..l.net.layers.len() {
            if let Some(s) = l.kfac.s(i) {
                out.push((format!("torch.kfac.s.{i}"), f32_bytes(&to_vec(s)?)));
            }
        }
        Ok(out)
    }

    fn load(&mut self, blobs: &[(String, Vec<u8>)]) -> Result<()> {
        let bad = |r: String| {
            HostError::InvalidSetting(format!("checkpoint does not fit this network: {r}"))
        };
        // Every f32 blob whole and finite before anything is loaded.
        for (name, bytes) in blobs.iter().filter(|(n, _)| {
            ["torch.param.", "torch.velocity.", "torch.kfac."]
                .iter()
                .any(|p| n.starts_with(p))
        }) {
            acktr_host::agent::check_f32_blob(name, bytes).map_err(bad)?;
        }
        let l = &mut self.learner;
        let device = l.net.device();
        let fill = |name: &str, like: &Tensor| -> Result<Tensor> {
            let v = bytes_f32(blob(blobs, name).ok_or_else(|| bad(format!("missing {name}")))?);
            if v.len() as i64 != like.numel() as i64 {
                return Err(bad(format!(
                    "{name} has {} numbers, expected {}",
                    v.len(),
                    like.numel()
                )));
            }
            Ok(Tensor::from_slice(&v)
                .view(like.size().as_slice())
                .to_device(device))
        };
        let params: Vec<Tensor> = l
            .net
            .params()
            .iter()
            .enumerate()
            .map(|(i, p)| fill(&format!("torch.param.{i}"), p))
            .collect::<Result<_>>()?;
        let velocity: Vec<Tensor> = l
            .velocity
            .iter()
            .enumerate()
            .map(|(i, u)| fill(&format!("torch.velocity.{i}"), u))
            .collect::<Result<_>>()?;
        let square = |name: String| -> Option<Tensor> {
            let v = bytes_f32(blob(blobs, &name)?);
            let n = (v.len() as f64).sqrt() as i64;
            (n * n == v.len() as i64).then(|| Tensor::from_slice(&v).view([n, n]).to_device(device))
        };
        let updates = blob(blobs, "torch.updates")
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| bad("missing update count".into()))?;
        tch::no_grad(|| {
            for (p, v) in l.net.params().iter().zip(params.iter()) {
                p.shallow_clone().copy_(v);
            }
        });
        l.velocity = velocity;
        l.kfac = super::kfac::TorchKfac::new(&l.net);
        // All factors or none (a checkpoint taken before the first natural update has none).
        let a: Option<Vec<Tensor>> = (0..l.net.groups)
            .map(|i| square(format!("torch.kfac.a.{i}")))
            .collect();
        let s: Option<Vec<Tensor>> = (0..l.net.layers.len())
            .map(|i| square(format!("torch.kfac.s.{i}")))
            .collect();
        if let (Some(a), Some(s)) = (a, s) {
            l.kfac
                .load(&a, &s)
                .map_err(|e| bad(format!("K-FAC statistics: {e}")))?;
        }
        l.updates = updates;
        Ok(())
    }

    /// An MLP as a version-1 policy file; the small MinAtar net (`Arch::MinAtarSmall`) as the
    /// version-2 file `--backend native` writes for it (acktr-core's `MinAtarSmall`): the conv
    /// read channel-last (HWC, as MinAtar's boards and the firmware give them), its weights
    /// `F×C×K×K` row-major, which is the core's `w[f][(c·K + i)·K + j]` whatever the
    /// observation's layout. The other conv nets have no core counterpart and are refused.
    fn export(&self) -> Result<Vec<u8>> {
        let net = &self.learner.net;
        let (trunks, activation, conv) = match &net.arch {
            Arch::Mlp {
                separate,
                activation,
                ..
            } => (if *separate { 2 } else { 1 }, *activation, None),
            Arch::MinAtarSmall => {
                let (Some(l), &[c, h, w]) = (&net.layers[0].conv, net.obs_shape.as_slice()) else {
                    return Err(HostError::InvalidSetting(
                        "the small MinAtar net has no C×H×W conv to export".into(),
                    ));
                };
                let spec = ConvSpec {
                    channels: c as u32,
                    filters: net.layers[0].outputs() as u32,
                    kernel: l.k as u32,
                    stride: l.stride as u32,
                    height: h as u32,
                    width: w as u32,
                    channels_last: true,
                };
                (1, Activation::Relu, Some(spec))
            }
            Arch::MinAtar | Arch::Nature => {
                return Err(HostError::InvalidSetting(
                    "only MLP policies and --arch minatar-small can be exported (acktr-core \
                     runs those); this run uses another conv net"
                        .into(),
                ))
            }
        };
        // The first trunk's dense widths (a conv, the encoder, is not one of them).
        let mut h = heapless::Vec::new();
        for l in &net.layers[net.trunks[0].clone()] {
            if l.conv.is_none() {
                h.push(l.outputs() as u32).map_err(|_| {
                    HostError::InvalidSetting(format!(
                        "at most {} hidden layers can be exported",
                        acktr_core::MAX_HIDDEN_LAYERS
                    ))
                })?;
            }
        }
        let arch = PolicyArch {
            obs_dim: net.obs_shape.iter().product::<i64>() as u32,
            hidden: h,
            trunks,
            activation,
            head: net.head,
            actions: self.outputs as u32,
            normalized: false,
        };
        // File order is tch's layer order: (the conv,) trunk by trunk, π, v; `W` then `b`.
        let mut parts = Vec::new();
        for l in &net.layers {
            parts.push(to_vec(&l.w)?);
            parts.push(to_vec(&l.b)?);
        }
        if net.head == HeadKind::Gaussian {
            parts.push(to_vec(&net.log_std)?);
        }
        let refs: Vec<&[f32]> = parts.iter().map(|p| p.as_slice()).collect();
        let len = match &conv {
            None => acktr_core::encoded_len_parts(&arch),
            Some(c) => acktr_core::encoded_len_conv_parts(c, &arch),
        }
        .ok_or_else(|| HostError::InvalidSetting("network too large to export".into()))?;
        let mut buf = vec![0u8; len];
        let n = match &conv {
            None => acktr_core::write_policy_parts(&arch, &refs, None, &mut buf)?,
            Some(c) => acktr_core::write_conv_policy_parts(c, &arch, &refs, None, &mut buf)?,
        };
        buf.truncate(n);
        Ok(buf)
    }

    fn describe(&self) -> serde_json::Value {
        let net = &self.learner.net;
        let params: i64 = net.params().iter().map(|p| p.numel() as i64).sum();
        serde_json::json!({
            "backend": "tch",
            "device": format!("{:?}", net.device()),
            "arch": net.arch,
            "params": params,
        })
    }
}
