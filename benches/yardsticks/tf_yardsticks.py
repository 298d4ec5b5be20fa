"""Same-machine yardsticks for docs/performance.md: TensorFlow/Keras and NumPy on the CPU.

    pip install tensorflow-cpu numpy
    python3 benches/yardsticks/tf_yardsticks.py [course|resnet34|matmul|add|conv|all]

Each figure is what wgrad's matching bench or example measures, for the same shapes:
- course: the README main job's model (Conv 64 3x3 relu, MaxPool 2, Flatten, Dense 128 relu,
  Dense 10) trained with Adam 1e-3 at batch 64 on 28x28x1 inputs: images/s of `fit`
  (synthetic data of Fashion-MNIST's shape: the speed does not depend on the pixels).
- resnet34: Geron's ResNet-34 (7x7/2 stem, 3/4/6/3 basic units, as wgrad_models::resnet34),
  32x32x3, batch 32, SGD momentum 0.9: median seconds of a training step.
- matmul: NumPy (OpenBLAS) 1024^3 float32 matmul, GFLOP/s.
- add: NumPy add of 16 M float32, one thread, GB/s (read 2, write 1).
- conv: 3x3 64->64 conv on [8, 56, 56, 64], forward and forward + both gradients (ms).
"""
import os
import sys
import time

which = sys.argv[1] if len(sys.argv) > 1 else "all"
if which == "add":
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np


def median_time(f, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def matmul():
    a = np.random.rand(1024, 1024).astype(np.float32)
    b = np.random.rand(1024, 1024).astype(np.float32)
    a @ b
    t = median_time(lambda: a @ b, 20)
    print(f"numpy matmul 1024^3 float32: {2 * 1024**3 / t / 1e9:.1f} GFLOP/s")


def add():
    a = np.random.rand(16 << 20).astype(np.float32)
    b = np.random.rand(16 << 20).astype(np.float32)
    out = np.empty_like(a)
    np.add(a, b, out=out)
    t = median_time(lambda: np.add(a, b, out=out), 20)
    print(f"numpy add 16M float32, one thread: {3 * 4 * (16 << 20) / t / 1e9:.2f} GB/s")


def keras():
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, threads: inter {tf.config.threading.get_inter_op_parallelism_threads()} intra {tf.config.threading.get_intra_op_parallelism_threads()}")
    return tf


def course():
    tf = keras()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(10),
    ])
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    n = 64 * 300
    x = np.random.rand(n, 28, 28, 1).astype(np.float32)
    y = np.random.randint(0, 10, n)
    model.fit(x[:64 * 20], y[:64 * 20], batch_size=64, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    print(f"course model fit, batch 64: {n / dt:.0f} img/s ({n} images in {dt:.1f} s)")


def unit(tf, x, filters, strides):
    L = tf.keras.layers
    skip = x
    y = L.Conv2D(filters, 3, strides, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(filters, 3, 1, padding="same", use_bias=False)(y)
    y = L.BatchNormalization()(y)
    if strides > 1 or x.shape[-1] != filters:
        skip = L.Conv2D(filters, 1, strides, padding="same", use_bias=False)(x)
        skip = L.BatchNormalization()(skip)
    return L.ReLU()(L.Add()([y, skip]))


def resnet34():
    tf = keras()
    L = tf.keras.layers
    inp = L.Input((32, 32, 3))
    x = L.Conv2D(64, 7, 2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D(3, 2, padding="same")(x)
    prev = 64
    for filters in [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3:
        x = unit(tf, x, filters, 1 if filters == prev else 2)
        prev = filters
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10)(L.Flatten()(x))
    model = tf.keras.Model(inp, out)
    opt = tf.keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((32, 32, 32, 3))
    y = tf.constant(np.arange(32) % 10)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(3):
        step().numpy()
    t = median_time(lambda: step().numpy(), 10)
    print(f"ResNet-34 32x32 batch 32 training step: {t:.3f} s")


def conv():
    tf = keras()
    x = tf.random.uniform((8, 56, 56, 64))
    w = tf.random.uniform((3, 3, 64, 64))

    @tf.function
    def fwd():
        return tf.nn.conv2d(x, w, 1, "SAME")

    @tf.function
    def both():
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d(x, w, 1, "SAME")
            s = tf.reduce_sum(y)
        return tape.gradient(s, [x, w])

    fwd(); both()
    f = median_time(lambda: fwd().numpy(), 10)
    b = median_time(lambda: [g.numpy() for g in both()], 10)
    print(f"conv 3x3 64->64 [8,56,56]: forward {f * 1e3:.1f} ms, forward + both gradients {b * 1e3:.1f} ms")


jobs = {"matmul": matmul, "add": add, "course": course, "resnet34": resnet34, "conv": conv}
for name, job in jobs.items():
    if which in (name, "all"):
        job()
