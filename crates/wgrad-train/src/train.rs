//! Training: Keras's `compile` (a [`Trainer`] owns a model, a loss and an optimizer), `fit`,
//! `evaluate`, `predict`, callbacks and the progress bar.
//!
//! A step records forward, backward and the optimizer's fused updates into the device's open
//! command batch and never waits: the loss and the accuracy accumulate in device scalars that
//! are read once per `log_every` steps (for the progress bar) and at the end of an epoch.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad_data::{Batch, DataLoader};
use wgrad_graph::{no_grad, ops, Var};
use wgrad_tensor::{DType, Device, Tensor};

use wgrad_nn::{splitmix, Ctx, Error, Layer, Loss, LossScale, Optimizer, Result};

use crate::GradientSync;

/// What one epoch (or one evaluation) measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f32,
    /// Fraction of samples (of pixels, for masks) whose arg-max prediction equals the label
    /// (classification losses).
    pub accuracy: Option<f32>,
    /// Fraction of samples whose label is among the `k` highest scores
    /// ([`Trainer::top_k_accuracy`]; Keras's `sparse_top_k_categorical_accuracy`).
    pub top_k_accuracy: Option<f32>,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    pub val_top_k_accuracy: Option<f32>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub learning_rate: f32,
}

impl EpochLog {
    /// A metric by name (`loss`, `accuracy`, `top_k_accuracy` and their `val_` forms).
    pub fn get(&self, metric: &str) -> Option<f32> {
        match metric {
            "loss" => Some(self.loss),
            "accuracy" => self.accuracy,
            "val_loss" => self.val_loss,
            "val_accuracy" => self.val_accuracy,
            "top_k_accuracy" => self.top_k_accuracy,
            "val_top_k_accuracy" => self.val_top_k_accuracy,
            _ => None,
        }
    }
}

/// Every epoch's log, as Keras's `History`.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub epochs: Vec<EpochLog>,
}

impl History {
    /// One metric over the epochs (`None` entries where it was not measured are skipped).
    pub fn series(&self, metric: &str) -> Vec<f32> {
        self.epochs.iter().filter_map(|e| e.get(metric)).collect()
    }

    /// The training images/s averaged over the epochs (0 when none ran).
    pub fn mean_images_per_second(&self) -> f64 {
        let sum: f64 = self.epochs.iter().map(|e| e.images_per_second).sum();
        sum / self.epochs.len().max(1) as f64
    }
}

/// What a callback tells `fit` after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Called after every epoch with its log and the model (Keras's `Callback.on_epoch_end`).
pub trait Callback {
    fn on_epoch_end(&mut self, log: &EpochLog, model: &dyn Layer) -> Result<Control>;
}

/// Any closure `|log| -> Control` is a callback, e.g. the seeds' "stop at 99 % accuracy".
impl<F: FnMut(&EpochLog) -> Control> Callback for F {
    fn on_epoch_end(&mut self, log: &EpochLog, _: &dyn Layer) -> Result<Control> {
        Ok(self(log))
    }
}

/// Stops when `monitor` has not improved by `min_delta` for `patience` epochs. Metrics whose
/// name ends in `loss` improve downwards, the others upwards.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    pub monitor: String,
    pub patience: usize,
    pub min_delta: f32,
    best: Option<f32>,
    waited: usize,
}

impl EarlyStopping {
    pub fn new(monitor: &str, patience: usize) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.into(),
            patience,
            min_delta: 0.0,
            best: None,
            waited: 0,
        }
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, log: &EpochLog, _: &dyn Layer) -> Result<Control> {
        let Some(v) = log.get(&self.monitor) else {
            return Err(Error::Input {
                what: "EarlyStopping",
                reason: format!(
                    "metric {:?} was not measured (is there validation data?)",
                    self.monitor
                ),
            });
        };
        let lower = self.monitor.ends_with("loss");
        let better = match self.best {
            None => true,
            Some(b) if lower => v < b - self.min_delta,
            Some(b) => v > b + self.min_delta,
        };
        if better {
            self.best = Some(v);
            self.waited = 0;
        } else {
            self.waited += 1;
        }
        Ok(if self.waited > self.patience {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// Saves the model's weights (safetensors, written atomically) after each epoch, or only when
/// `monitor` improved when `save_best_only`.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    pub path: std::path::PathBuf,
    pub monitor: String,
    pub save_best_only: bool,
    best: Option<f32>,
}

impl ModelCheckpoint {
    pub fn new(path: impl Into<std::path::PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            best: None,
        }
    }

    pub fn best_only(mut self, monitor: &str) -> Self {
        self.monitor = monitor.into();
        self.save_best_only = true;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, log: &EpochLog, model: &dyn Layer) -> Result<Control> {
        if self.save_best_only {
            let v = log.get(&self.monitor).unwrap_or(log.loss);
            let lower = self.monitor.ends_with("loss");
            let better = self.best.is_none_or(|b| if lower { v < b } else { v > b });
            if !better {
                return Ok(Control::Continue);
            }
            self.best = Some(v);
        }
        wgrad_nn::save_weights(model, &self.path)?;
        Ok(Control::Continue)
    }
}

/// How `fit` runs.
pub struct FitOptions<'a> {
    pub epochs: usize,
    /// Evaluated after every epoch.
    pub validation: Option<&'a DataLoader>,
    /// Stop each epoch after this many steps (`None`: the whole loader).
    pub steps_per_epoch: Option<usize>,
    /// Progress bar and a Keras-like line per epoch.
    pub verbose: bool,
    /// Steps between progress-bar readings of the loss (each is one small readback).
    pub log_every: usize,
    /// When stdout is not a terminal (a log file, CI) there is no bar; instead a plain line
    /// (step, loss, accuracy, img/s, ETA) every this many steps, rounded up to `log_every`.
    pub print_every: usize,
    pub callbacks: Vec<&'a mut dyn Callback>,
    /// The first epoch's number (for resuming from a checkpoint).
    pub initial_epoch: usize,
    /// Keras's `BackupAndRestore`: a full checkpoint written (atomically) after every epoch,
    /// and restored first when it exists, so an interrupted `fit` resumes at the epoch after
    /// the last one finished.
    pub backup: Option<std::path::PathBuf>,
}

impl<'a> FitOptions<'a> {
    pub fn epochs(epochs: usize) -> FitOptions<'a> {
        FitOptions {
            epochs,
            validation: None,
            steps_per_epoch: None,
            verbose: true,
            log_every: 20,
            print_every: 100,
            callbacks: Vec::new(),
            initial_epoch: 0,
            backup: None,
        }
    }
    pub fn backup(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.backup = Some(path.into());
        self
    }
    pub fn validation(mut self, v: &'a DataLoader) -> Self {
        self.validation = Some(v);
        self
    }
    pub fn steps_per_epoch(mut self, n: usize) -> Self {
        self.steps_per_epoch = Some(n);
        self
    }
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }
    pub fn callback(mut self, c: &'a mut dyn Callback) -> Self {
        self.callbacks.push(c);
        self
    }
    pub fn initial_epoch(mut self, e: usize) -> Self {
        self.initial_epoch = e;
        self
    }
}

/// Running sums of one epoch, kept on the device.
struct Sums {
    loss: Tensor,
    correct: Tensor,
    /// `k` and the count of samples whose label is among the top `k` scores.
    top_k: Option<(usize, Tensor)>,
    samples: usize,
    /// Labelled positions: the samples, or every pixel of per-pixel labels.
    positions: usize,
}

/// One reading of [`Sums`].
struct Reading {
    loss: f32,
    accuracy: f32,
    top_k: Option<f32>,
}

impl Sums {
    fn new(dev: &Device, top_k: Option<usize>) -> Result<Sums> {
        let zero = || Tensor::zeros(dev, &[1], DType::F32);
        Ok(Sums {
            loss: zero()?,
            correct: zero()?,
            top_k: match top_k {
                Some(k) => Some((k, zero()?)),
                None => None,
            },
            samples: 0,
            positions: 0,
        })
    }

    /// Adds one batch's mean loss and its correct predictions (device ops only).
    fn add(&mut self, loss: &Tensor, pred: &Tensor, labels: Option<&Tensor>) -> Result<()> {
        let n = pred.shape()[0];
        self.loss = self.loss.add(&loss.reshape(&[1])?.mul_scalar(n as f32)?)?;
        if let Some(l) = labels {
            let hit = pred
                .argmax(-1, false)?
                .to_dtype(DType::F32)?
                .eq(&l.to_dtype(DType::F32)?)?;
            self.correct = self
                .correct
                .add(&hit.to_dtype(DType::F32)?.sum(&[], false)?.reshape(&[1])?)?;
            self.positions += l.numel();
            if let Some((k, count)) = &mut self.top_k {
                // In the top k when fewer than k scores beat the label's own score.
                let c = pred.shape()[pred.shape().len() - 1];
                let pred = pred.reshape(&[l.numel(), c])?;
                let own = pred
                    .mul(&wgrad_graph::ops::one_hot(l, c)?)?
                    .sum(&[-1], true)?;
                let beaten = pred.gt(&own)?.to_dtype(DType::F32)?.sum(&[-1], false)?;
                let k_t = Tensor::full(pred.device(), &[1], *k as f64, DType::F32)?;
                let hits = beaten.lt(&k_t)?.to_dtype(DType::F32)?.sum(&[], false)?;
                *count = count.add(&hits.reshape(&[1])?)?;
            }
        }
        self.samples += n;
        Ok(())
    }

    /// Mean loss, accuracy and top-k accuracy: one readback of all sums, summed over the
    /// replicas of a data-parallel job when there is one.
    fn read(&self, sync: Option<&mut Box<dyn GradientSync>>) -> Result<Reading> {
        let mut parts = vec![&self.loss, &self.correct];
        if let Some((_, c)) = &self.top_k {
            parts.push(c);
        }
        let mut v: Vec<f64> = Tensor::concat(&parts, 0)?
            .to_vec::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        v.extend([self.samples as f64, self.positions as f64]);
        if let Some(sync) = sync {
            sync.all_sum(&mut v)?;
        }
        let (n, p) = (v[v.len() - 2].max(1.0), v[v.len() - 1].max(1.0));
        Ok(Reading {
            loss: (v[0] / n) as f32,
            accuracy: (v[1] / p) as f32,
            top_k: (v.len() > 4).then(|| (v[2] / p) as f32),
        })
    }
}

/// A model with its loss (one per output, weighted) and optimizer: Keras's compiled model.
pub struct Trainer<M: Layer> {
    pub model: M,
    pub optimizer: Optimizer,
    losses: Vec<(Loss, f32)>,
    seed: u64,
    steps: u64,
    epochs_done: usize,
    top_k: Option<usize>,
    class_weight: Option<Vec<f32>>,
    /// Data-parallel training: how gradients and metrics meet the other replicas'.
    sync: Option<Box<dyn GradientSync>>,
    /// Mixed precision: f16 activations, with this dynamic loss scale.
    pub(crate) mixed: Option<LossScale>,
    /// Whether this trainer's first step has announced its pipelines to the device.
    announced: bool,
}

impl<M: Layer> Trainer<M> {
    /// `model.compile(optimizer, loss)`; accuracy is measured for the categorical losses.
    pub fn new(model: M, optimizer: Optimizer, loss: Loss) -> Trainer<M> {
        Self::multi_output(model, optimizer, vec![(loss, 1.0)])
    }

    /// A model with several outputs, each with its loss and weight (Keras's
    /// `compile(loss=[…], loss_weights=[…])`): the step minimises Σ weight·loss. `fit` and
    /// `evaluate` feed a sparse loss the loader's labels and any other loss its float targets
    /// (`Dataset::with_targets`); accuracy is the first output's. Steps on device tensors:
    /// [`Trainer::train_step_multi`].
    pub fn multi_output(model: M, optimizer: Optimizer, losses: Vec<(Loss, f32)>) -> Trainer<M> {
        Trainer {
            model,
            optimizer,
            losses,
            seed: 0,
            steps: 0,
            announced: false,
            epochs_done: 0,
            top_k: None,
            class_weight: None,
            sync: None,
            mixed: None,
        }
    }

    /// Keras's `mixed_float16` policy with its `LossScaleOptimizer` (initial scale 2¹⁵,
    /// doubled every 2,000 finite steps): the batch enters the model in f16, so every
    /// activation and activation gradient is stored in f16 (half the memory a step keeps for
    /// backward) while every kernel computes in f32; weights, their gradients and the
    /// optimizer's slots stay f32; the outputs are widened to f32 before the losses. A step
    /// whose gradients overflow f16 is skipped and halves the scale.
    pub fn mixed_precision(self) -> Self {
        self.loss_scale(LossScale::dynamic())
    }

    /// [`Trainer::mixed_precision`] with a loss scale of your choosing.
    pub fn loss_scale(mut self, scale: LossScale) -> Self {
        self.mixed = Some(scale);
        self
    }

    /// The dynamic loss scale, when training in mixed precision.
    pub fn loss_scale_state(&self) -> Option<&LossScale> {
        self.mixed.as_ref()
    }

    /// The model's input as it enters the model: f16 under mixed precision (float inputs
    /// only), as it is otherwise.
    fn admit(&self, x: &Tensor) -> Result<Var> {
        Ok(Var::new(match (&self.mixed, x.dtype()) {
            (Some(_), DType::F32) => x.to_dtype(DType::F16)?,
            _ => x.clone(),
        }))
    }

    /// The model's outputs widened to f32, so losses and metrics see f32 (Keras's advice of
    /// an f32 final layer under `mixed_float16`).
    fn widen(&self, outs: Vec<Var>) -> Result<Vec<Var>> {
        if self.mixed.is_none() {
            return Ok(outs);
        }
        Ok(outs
            .iter()
            .map(|y| ops::cast(y, DType::F32))
            .collect::<wgrad_tensor::Result<_>>()?)
    }

    /// Trains as one replica of a data-parallel job: every step's gradients are averaged
    /// with the other replicas' through `sync` before the optimizer runs, `fit` reduces its
    /// metrics over the replicas, and only the primary replica prints and writes
    /// checkpoints. `wgrad-dist` makes one on MPI, and also broadcasts the initial weights.
    pub fn distributed(mut self, sync: Box<dyn GradientSync>) -> Self {
        self.sync = Some(sync);
        self
    }

    /// True unless this is a non-primary replica of a data-parallel job.
    pub fn is_primary(&self) -> bool {
        self.sync.as_ref().is_none_or(|s| s.is_primary())
    }

    /// The seed of dropout masks and other per-step randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Keras's `fit(class_weight=…)`: the (first) sparse cross-entropy weighs each position
    /// by its true class's weight during training (`evaluate` reports the plain loss, as
    /// Keras's does). One weight per class.
    pub fn class_weight(mut self, weights: &[f32]) -> Self {
        self.class_weight = Some(weights.to_vec());
        self
    }

    /// Also measure top-`k` accuracy (classification losses with class labels).
    pub fn top_k_accuracy(mut self, k: usize) -> Self {
        self.top_k = Some(k.max(1));
        self
    }

    fn sums(&self, dev: &Device) -> Result<Sums> {
        Sums::new(dev, self.top_k.filter(|_| self.classifies()))
    }

    /// Training steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Epochs completed so far (restored from a checkpoint).
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// The (first) output's loss.
    pub fn loss(&self) -> Loss {
        self.losses[0].0
    }

    fn classifies(&self) -> bool {
        matches!(
            self.loss(),
            Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. }
        )
    }

    /// Uploads a host batch; returns the images, each loss's targets and the class labels.
    /// A sparse loss trains against the batch's labels (classes or masks), any other loss
    /// against its float targets (boxes: [`Dataset::with_targets`](wgrad_data::Dataset)),
    /// so a class + box model trains from one loader as Keras's `fit(x, [y, boxes])`.
    fn upload(&self, dev: &Device, b: &Batch) -> Result<(Tensor, Vec<Tensor>, Tensor)> {
        let x = Tensor::from_slice(dev, &b.images, &b.shape)?;
        let labels = Tensor::from_slice(dev, &b.labels, &b.label_shape)?;
        let mut floats: Option<Tensor> = None;
        let mut targets = Vec::with_capacity(self.losses.len());
        for (loss, _) in &self.losses {
            if loss.sparse() {
                targets.push(labels.clone());
                continue;
            }
            if b.target_shape.is_empty() {
                return Err(Error::Input {
                    what: "fit",
                    reason: format!(
                        "{} needs float targets and the loader's data set has only class labels: attach them with Dataset::with_targets, or use sparse_categorical_crossentropy",
                        loss.name()
                    ),
                });
            }
            if floats.is_none() {
                floats = Some(Tensor::from_slice(dev, &b.targets, &b.target_shape)?);
            }
            targets.push(floats.clone().expect("uploaded above"));
        }
        Ok((x, targets, labels))
    }

    /// Σ weight·loss over the outputs; the class weights apply to the first output in
    /// training only, as Keras's `fit(class_weight=…)`.
    fn total_loss(&self, preds: &[Var], targets: &[Tensor], training: bool) -> Result<Var> {
        if preds.len() != self.losses.len() || targets.len() != self.losses.len() {
            return Err(Error::Input {
                what: "train_step",
                reason: format!(
                    "the model has {} outputs, {} targets were given, and {} losses compiled",
                    preds.len(),
                    targets.len(),
                    self.losses.len()
                ),
            });
        }
        let mut total: Option<Var> = None;
        for (i, ((pred, target), (loss, weight))) in
            preds.iter().zip(targets).zip(&self.losses).enumerate()
        {
            let mut l = match &self.class_weight {
                Some(cw) if i == 0 && training => loss.compute_class_weighted(pred, target, cw)?,
                _ => loss.compute(pred, target)?,
            };
            if *weight != 1.0 {
                l = ops::mul_scalar(&l, *weight)?;
            }
            total = Some(match total {
                Some(t) => ops::add(&t, &l)?,
                None => l,
            });
        }
        total.ok_or_else(|| Error::config("Trainer", "no loss"))
    }

    /// One training step on device tensors: forward, loss, backward, optimizer update.
    /// Records work without waiting; returns the mean loss and the predictions (on the device).
    pub fn train_step(&mut self, x: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
        let (loss, mut preds) =
            self.train_step_multi(std::slice::from_ref(x), std::slice::from_ref(target))?;
        Ok((loss, preds.remove(0)))
    }

    /// One step of a model with any number of inputs and outputs: `targets[i]` goes with
    /// output `i` and its loss. Returns Σ weight·loss and the outputs (on the device).
    pub fn train_step_multi(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if targets.len() != self.losses.len() {
            return Err(Error::Input {
                what: "train_step",
                reason: format!("{} targets for {} losses", targets.len(), self.losses.len()),
            });
        }
        if !self.announced {
            self.announced = true;
            self.announce_pipelines(inputs, targets)?;
        }
        let mut ctx = Ctx::new(true, splitmix(self.seed ^ splitmix(self.steps)));
        let (total, preds) = self.forward_loss(inputs, targets, &mut ctx)?;
        // Under mixed precision backward starts from the scaled loss.
        let seed = match &self.mixed {
            Some(ls) => ops::mul_scalar(&total, ls.scale())?,
            None => total.clone(),
        };
        match self.sync.as_mut() {
            None => seed.backward()?,
            Some(sync) => {
                let params = self.model.params();
                let trainable: Vec<(u64, &Tensor)> = params
                    .iter()
                    .filter(|p| p.trainable())
                    .filter_map(|p| p.var().id().map(|id| (id, p.value())))
                    .collect();
                sync.begin(&trainable)?;
                // The graph's hook speaks the tensor crate's error: keep the sync's own.
                let mut failed = None;
                let observed = seed.backward_observed(&mut |id, g| {
                    sync.ready(id, g).map_err(|e| {
                        let reason = e.to_string();
                        failed = Some(e);
                        wgrad_tensor::Error::InvalidArgument {
                            op: "gradient sync",
                            reason,
                        }
                    })
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                observed?;
                let averaged: std::collections::HashMap<u64, Tensor> =
                    sync.finish()?.into_iter().collect();
                for p in params {
                    if let Some(g) = p.var().id().and_then(|id| averaged.get(&id)) {
                        p.set_grad(g.clone());
                    }
                }
            }
        }
        let apply = match self.mixed.as_mut() {
            Some(ls) => ls.unscale(&self.model.params())?,
            None => true,
        };
        if apply {
            self.optimizer.step(self.model.params_mut())?;
        }
        self.steps += 1;
        Ok((
            total.into_value(),
            preds.into_iter().map(Var::into_value).collect(),
        ))
    }

    /// The training-mode forward pass and Σ weight·loss, with the outputs in f32.
    fn forward_loss(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<(Var, Vec<Var>)> {
        let xs: Vec<Var> = inputs
            .iter()
            .map(|x| self.admit(x))
            .collect::<Result<_>>()?;
        let preds = self.model.forward_multi(&xs, ctx)?;
        let preds = self.widen(preds)?;
        let total = self.total_loss(&preds, targets, true)?;
        Ok((total, preds))
    }

    /// Where the device compiles pipelines ahead (lavapipe), records the step's forward and
    /// backward once without running them (`Device::announce_pipelines`), so that the helper
    /// learns of the backward pass's kernels while the queue still compiles the forward's,
    /// then puts back every weight and state tensor the recording replaced. The optimizer's
    /// and the loss scale's state are not touched: the recording stops before them.
    fn announce_pipelines(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<()> {
        let Some(dev) = inputs.first().map(|x| x.device().clone()) else {
            return Ok(());
        };
        if !dev.compiles_ahead() {
            return Ok(());
        }
        let saved: Vec<Tensor> = self
            .model
            .params()
            .iter()
            .map(|p| p.value().clone())
            .collect();
        let recorded = dev.announce_pipelines(|| -> Result<()> {
            let (total, _) = self.forward_loss(inputs, targets, &mut Ctx::new(true, 0))?;
            Ok(total.backward()?)
        });
        // `set` also forgets the gradients the recording left.
        for (p, v) in self.model.params_mut().into_iter().zip(saved) {
            p.set(v);
        }
        recorded
    }

    /// Trains for `opts.epochs` epochs over `train`, evaluating on `opts.validation` after
    /// each; returns the history. The progress bar shows loss, accuracy and images/second.
    ///
    /// An error in a step (out of memory, a lost device) ends the run: `fit` returns it, and
    /// with `verbose` says where it stopped and what to do. The last checkpoint (`backup`) is
    /// the one the last finished epoch wrote, untouched; a `fit` with the same backup resumes
    /// from it (after an error the trainer's own weights may be half-way through a step).
    pub fn fit(&mut self, train: &DataLoader, mut opts: FitOptions<'_>) -> Result<History> {
        // Replicas other than the primary neither print nor write checkpoints.
        opts.verbose &= self.is_primary();
        let result = self.fit_epochs(train, &mut opts);
        if let (Err(e), true) = (&result, opts.verbose) {
            let resume = match &opts.backup {
                Some(p) if p.is_file() => format!(
                    "; the checkpoint {} (epoch {}) is intact: fit again with the same backup to resume from it",
                    p.display(),
                    self.epochs_done
                ),
                _ => String::new(),
            };
            eprintln!(
                "fit stopped in epoch {} after {} steps: {e}{resume}",
                self.epochs_done + 1,
                self.steps
            );
        }
        result
    }

    fn fit_epochs(&mut self, train: &DataLoader, opts: &mut FitOptions<'_>) -> Result<History> {
        let dev = self.device()?;
        if train.moves_pixels() && !train.dataset().target_shape().is_empty() {
            return Err(Error::Input {
                what: "fit",
                reason: "the loader flips or crops its images, and its float targets (boxes) would no longer describe them: drop the geometric transforms, or move the targets yourself".into(),
            });
        }
        let mut history = History::default();
        let steps = opts
            .steps_per_epoch
            .map_or(train.num_batches(), |s| s.min(train.num_batches()));
        if steps == 0 {
            return Err(Error::Input {
                what: "fit",
                reason: "the training loader yields no batch (empty dataset, or drop_last with fewer samples than a batch)".into(),
            });
        }
        // Every replica resumes from the checkpoint the primary would (a shared file system,
        // or the file copied to each host), so the replicas stay identical.
        let mut resume = [opts.backup.as_ref().is_some_and(|p| p.is_file()) as u8 as f32];
        if let Some(sync) = self.sync.as_mut() {
            sync.broadcast(&mut resume)?;
        }
        if let Some(path) = opts.backup.as_ref().filter(|_| resume[0] != 0.0) {
            self.load_checkpoint(path)?;
            if opts.verbose {
                println!(
                    "restored {} (epoch {}, step {})",
                    path.display(),
                    self.epochs_done,
                    self.steps
                );
            }
        }
        let first = opts.initial_epoch.max(self.epochs_done);
        let to_terminal = std::io::stdout().is_terminal();
        let log_every = opts.log_every.max(1);
        // A multiple of `log_every`, so each printed line reuses a reading the bar would take.
        let print_every = opts.print_every.max(1).div_ceil(log_every) * log_every;
        for epoch in first..opts.epochs {
            let start = Instant::now();
            let lr = self.optimizer.learning_rate();
            let bar = progress(
                opts.verbose && to_terminal,
                steps as u64,
                epoch,
                opts.epochs,
            );
            let mut sums = self.sums(&dev)?;
            for (i, batch) in train.epoch(epoch as u64).take(steps).enumerate() {
                let (x, targets, labels) = self.upload(&dev, &batch)?;
                let (loss, preds) = self.train_step_multi(std::slice::from_ref(&x), &targets)?;
                sums.add(&loss, &preds[0], self.classifies().then_some(&labels))?;
                // Start the device on this step while the host records the next.
                dev.flush();
                let step = i + 1;
                let plain = opts.verbose && !to_terminal && step % print_every == 0;
                if (to_terminal && step % log_every == 0) || plain || step == steps {
                    let r = sums.read(self.sync.as_mut())?;
                    let elapsed = start.elapsed().as_secs_f64();
                    let rate = sums.samples as f64 / elapsed;
                    let line = metrics_line(r.loss, self.classifies().then_some(r.accuracy), rate);
                    if plain && step < steps {
                        let eta = elapsed / step as f64 * (steps - step) as f64;
                        println!(
                            "Epoch {}/{} - step {step}/{steps} - {line} - ETA {}",
                            epoch + 1,
                            opts.epochs,
                            clock(eta)
                        );
                    }
                    bar.set_message(line);
                }
                bar.inc(1);
            }
            let r = sums.read(self.sync.as_mut())?;
            let seconds = start.elapsed().as_secs_f64();
            let mut log = EpochLog {
                epoch,
                loss: r.loss,
                accuracy: self.classifies().then_some(r.accuracy),
                top_k_accuracy: r.top_k,
                seconds,
                images_per_second: sums.samples as f64 / seconds,
                learning_rate: lr,
                ..Default::default()
            };
            if let Some(v) = opts.validation {
                let e = self.evaluate(v)?;
                log.val_loss = Some(e.loss);
                log.val_accuracy = e.accuracy;
                log.val_top_k_accuracy = e.top_k_accuracy;
            }
            bar.finish_and_clear();
            if opts.verbose {
                println!("{}", epoch_line(&log, opts.epochs));
            }
            self.epochs_done = epoch + 1;
            if let Some(path) = opts.backup.as_ref().filter(|_| self.is_primary()) {
                self.save_checkpoint(path)?;
            }
            history.epochs.push(log.clone());
            let mut stop = false;
            for c in opts.callbacks.iter_mut() {
                stop |= c.on_epoch_end(&log, &self.model)? == Control::Stop;
            }
            if stop {
                break;
            }
        }
        // Keras's fit ends by handing the weights their moving averages (with `use_ema`).
        self.optimizer
            .finalize_variable_values(self.model.params_mut());
        Ok(history)
    }

    /// Mean loss (and accuracy) over `data`, in inference mode without recording a graph.
    pub fn evaluate(&mut self, data: &DataLoader) -> Result<EpochLog> {
        let dev = self.device()?;
        let start = Instant::now();
        let mut sums = self.sums(&dev)?;
        for batch in data.epoch(0) {
            let (x, targets, labels) = self.upload(&dev, &batch)?;
            no_grad(|| -> Result<()> {
                let mut ctx = Ctx::new(false, 0);
                let preds = self.model.forward_multi(&[self.admit(&x)?], &mut ctx)?;
                let preds = self.widen(preds)?;
                let loss = self.total_loss(&preds, &targets, false)?;
                sums.add(
                    loss.value(),
                    preds[0].value(),
                    self.classifies().then_some(&labels),
                )
            })?;
            dev.flush();
        }
        if sums.samples == 0 {
            return Err(Error::Input {
                what: "evaluate",
                reason: "the loader yields no batch".into(),
            });
        }
        let r = sums.read(None)?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(EpochLog {
            loss: r.loss,
            accuracy: self.classifies().then_some(r.accuracy),
            top_k_accuracy: r.top_k,
            seconds,
            images_per_second: sums.samples as f64 / seconds,
            ..Default::default()
        })
    }

    /// The model's outputs for `x` (`[N, ...input]`), in inference mode, `batch` samples at a
    /// time; only the live activations of one batch are kept.
    pub fn predict(&mut self, x: &Tensor, batch: usize) -> Result<Tensor> {
        let x = self.admit(x)?.into_value();
        Ok(predict(&mut self.model, &x, batch)?.to_dtype(DType::F32)?)
    }

    fn device(&self) -> Result<Device> {
        self.model
            .params()
            .first()
            .map(|p| p.value().device().clone())
            .ok_or_else(|| Error::config(self.model.kind(), "has no weights to train"))
    }

    pub(crate) fn restore(&mut self, steps: u64, epochs_done: usize) {
        self.steps = steps;
        self.epochs_done = epochs_done;
    }
}

/// Keras's `decode_predictions`: for each row of `scores` (`[N, classes]`, probabilities or
/// logits), the `k` best classes as `(index, name, score)`, best first. `names` may be
/// empty (names are then the indices) or must have one entry per class.
pub fn decode_predictions(
    scores: &Tensor,
    k: usize,
    names: &[String],
) -> Result<Vec<Vec<(usize, String, f32)>>> {
    let [n, c] = scores.shape() else {
        return Err(Error::Input {
            what: "decode_predictions",
            reason: format!("needs [N, classes] scores, got {:?}", scores.shape()),
        });
    };
    let (n, c) = (*n, *c);
    if !names.is_empty() && names.len() != c {
        return Err(Error::Input {
            what: "decode_predictions",
            reason: format!("{} class names for {c} classes", names.len()),
        });
    }
    let v = scores.to_dtype(DType::F32)?.to_vec::<f32>()?;
    Ok((0..n)
        .map(|r| {
            let row = &v[r * c..(r + 1) * c];
            let mut idx: Vec<usize> = (0..c).collect();
            // NaN scores sort last.
            let key = |i: usize| {
                if row[i].is_nan() {
                    f32::NEG_INFINITY
                } else {
                    row[i]
                }
            };
            idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
            idx.into_iter()
                .take(k)
                .map(|i| {
                    let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
                    (i, name, row[i])
                })
                .collect()
        })
        .collect())
}

/// Inference over `x` in slices of `batch` samples, joined along the batch axis.
pub fn predict(model: &mut dyn Layer, x: &Tensor, batch: usize) -> Result<Tensor> {
    let mut outs = predict_multi(model, x, batch)?;
    if outs.len() != 1 {
        return Err(Error::Input {
            what: "predict",
            reason: format!("the model has {} outputs: use predict_multi", outs.len()),
        });
    }
    Ok(outs.remove(0))
}

/// [`predict`] for a model with several outputs: one tensor per output, each over all of
/// `x`'s samples.
pub fn predict_multi(model: &mut dyn Layer, x: &Tensor, batch: usize) -> Result<Vec<Tensor>> {
    let n = x.shape().first().copied().unwrap_or(0);
    if n == 0 || batch == 0 {
        return Err(Error::Input {
            what: "predict",
            reason: format!(
                "needs a non-empty batch and batch size; got {n} samples, batch {batch}"
            ),
        });
    }
    no_grad(|| {
        let mut outs: Vec<Vec<Tensor>> = Vec::new();
        let mut ctx = Ctx::new(false, 0);
        for s in (0..n).step_by(batch) {
            let xs = x.slice(0, s, (s + batch).min(n))?;
            let ys = model.forward_multi(&[Var::new(xs)], &mut ctx)?;
            outs.resize_with(ys.len(), Vec::new);
            for (o, y) in outs.iter_mut().zip(ys) {
                o.push(y.into_value());
            }
        }
        outs.iter()
            .map(|parts| {
                let refs: Vec<&Tensor> = parts.iter().collect();
                Ok(Tensor::concat(&refs, 0)?)
            })
            .collect()
    })
}

fn progress(verbose: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !verbose {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("Epoch {}/{epochs}", epoch + 1));
    bar
}

/// Seconds as `m:ss` (or `h:mm:ss`), as a log line's ETA.
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

fn metrics_line(loss: f32, acc: Option<f32>, rate: f64) -> String {
    let mut s = format!("loss: {loss:.4}");
    if let Some(a) = acc {
        s += &format!(" - accuracy: {a:.4}");
    }
    s + &format!(" - {rate:.0} img/s")
}

fn epoch_line(log: &EpochLog, epochs: usize) -> String {
    let mut s = format!(
        "Epoch {}/{epochs} - {:.1}s - {}",
        log.epoch + 1,
        log.seconds,
        metrics_line(log.loss, log.accuracy, log.images_per_second)
    );
    if let Some(v) = log.val_loss {
        s += &format!(" - val_loss: {v:.4}");
    }
    if let Some(v) = log.top_k_accuracy {
        s += &format!(" - top_k_accuracy: {v:.4}");
    }
    if let Some(v) = log.val_accuracy {
        s += &format!(" - val_accuracy: {v:.4}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn eta_clock_reads_as_minutes_or_hours() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(3599.6), "1:00:00");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
