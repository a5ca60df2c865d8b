"""Diffusion family throughput: this project's U-Net training step and Heun sampler vs
the same network in PyTorch (diffusers' UNet2DModel), each side in a process of its own.

  python benchmarks/diffusion_throughput.py [--image-size 32] [--width 64]
      [--channel-mult 1,2,2] [--attention 16] [--batch 32] [--steps 5] [--rounds 3]
      [--sample-steps 18] [--sample-batch 32]

Both sides: the identical U-Net (medgan_jax/models/unet.py is laid out as UNet2DModel;
parameter counts are checked equal), EDM's preconditioning, log-normal noise levels and
weighted loss (Karras et al. 2022), Adam, fp32, no dropout, an unconditional model on the
same random batch. Ours is the real training step (diffusion.make_train_step, jitted with
the state donated, the batch sharded over a 1-device mesh) and the real sampler (the
whole deterministic Heun loop one compiled program); PyTorch's is eager, its sampler a
Python loop under torch.no_grad() with the same noise levels and 2 * steps - 1 network
evaluations. Compile and warm-up are excluded; timed rounds alternate. Prints images/s
of both, the ratio, each step's FLOP count (XLA's cost analysis of ours, PyTorch's FLOP
counter of its own: the same arithmetic) and our FLOP rate against the best f32 matmul
rate measured in the same run; writes benchmarks/results/diffusion_throughput.json.
Sampling is timed twice, with each side's page faults and CPU seconds per call: in the
workers that trained (as the study samples, right after training) and in new workers
that only sample (as a sampling script does). PyTorch's sampler runs at two speeds
there: after training it takes no page faults, in a process that only samples it maps
and faults its buffers in afresh on every call (likely glibc's dynamic mmap threshold,
which rises only once large blocks have been freed; the "2026-12-05, later" paragraph).

Measured (defaults: 32x32x3, width 64 x (1, 2, 2), 2 residual blocks, attention at 16,
6,472,195 parameters, batch 32; Intel Xeon, 2 cores, quiet). First (2026-12-03 06:25,
XLA's 4096^2 matmul at 197 GFLOP/s): training 6.7 images/s (4.75 s/step) against PyTorch's
12.8 (2.50 s/step), 0.53x, our step 292 GFLOP by XLA's count at 61 GFLOP/s (31% of the
matmul rate); sampling, 18 Heun steps (35 evaluations) on 32 images, 0.9 against 1.2
images/s, 0.76x. The profile (jax.profiler, non-convolution ops about 3.1 s of the 4.7 s
step) blamed reduce fusions: GroupNorm's statistics and gradients, the Dense layers' bias
gradients over the attention's pixels, the softmax's, and the transposes of the
convolutions' kernel gradients. Rewritten (exact, tested equal to flax): GroupNorm with
its reductions as products with ones and its backward in two passes over the maps
(layers.group_norm), the attention's Dense layers with add_bias (layers.Dense). Then
(07:30, matmul at 191 GFLOP/s): training 7.8 against 12.0 images/s (4.13 vs 2.66 s/step),
0.64x, 71 GFLOP/s (37%); sampling 0.8 against 0.9 images/s, 0.85x. Profiled again
(13:00; 4.55 s/step that hour, non-convolution ops 2.3 s of it): dots 0.46 s, reduce
fusions 0.44 s, transposes 0.31 s. The reduce fusions were each ResBlock's noise-embedding
gradient (a per-image sum of dy over the pixels) and its conv bias gradient, XLA:CPU
recomputing the GroupNorm backward that produces dy inside both. layers.add_per_sample
(exact, tested) sums a materialised dy once: 3.94 against 4.36 s/step in an A/B in one
process (3 alternating rounds). Then (13:18, matmul at 160 GFLOP/s): training 8.2
against 11.6 images/s, 0.71x, 75 GFLOP/s (47%); sampling 0.8 against 1.2 images/s,
0.71x. Not yet at the target (ahead of PyTorch). Where the rest of the gap is (15:00,
quiet): with attention only in the middle (--attention 64) ours took 2.59 against 2.28
s/step (0.88x); PyTorch's attention is one fused kernel (scaled_dot_product_attention):
a 16x16x128 block's projections and attention (4 heads, batch 32), forward and backward,
took 48-61 ms there against 150-205 ms of ours (the batch's [4, 256, 256] weights make
several passes through memory; small batched dots with K = 32 run at 20-30 GFLOP/s).
Tried and not adopted (one-off A/B scripts in one process, alternating rounds, not kept):
the attention image by image in a lax.map with rematerialisation (the block alone 146
against 205 ms, but the whole step 3.24 against 3.15 s, best of 6 rounds, and sampling
36.1 against 37.5 s; XLA:CPU overlaps the batched attention's ops with the rest of the
step, the loop serialises it); the nearest upsample and 3x3 conv as
layers.upsample_conv3x3 (292 -> 274 GFLOP; 3.78 against 3.81 s, best of 5). With XLA's
YNNPACK fusions on (the package turns them off, app.set_xla_cpu_flags) the step took 5.84 s.

On a 2-core AMD EPYC (Zen 4, AVX-512), 2026-12-04, quiet, XLA's matmul at 199-207
GFLOP/s: at the start of the day training 11.6 against 14.6 images/s (0.79x), sampling
1.1 against 1.4 (0.81x). A 16x16x128 attention's core (4 heads, batch 32), one-off timing:
the softmax and products as written (weights normalised, then multiplied with v) 51 ms
forward, 84 ms with the backward pass, PyTorch's fused scaled_dot_product_attention 9.4
and 33 ms. Heads-major products with the softmax's division moved to the [T, D] output
(layers.attention, exact to float rounding, tested against jax.nn.dot_product_attention):
31 and 66 ms; the whole attention block 59 -> 41 ms forward, 147 -> 112 ms with the
backward pass (PyTorch's block 26 and 69 ms). Tried and slower or no better: custom VJPs
saving the weights (in either orientation, 82-103 ms with the backward pass), the row
sum as a ones column of v, the row max in two stages. Then the skip concatenations'
cotangent summed once (layers.concat_channels; the profile's transposes and copies
feeding kernel gradients 274 -> 214 ms per step). After both: training 12.7 against
15.4 images/s (0.82x), sampling 1.2 against 1.4 (0.89x; 0.92x in a run between the two
changes). The profile of the step (non-convolution ops about 1.0 s of 2.5 s): the
attention's batched products 214 ms (the [32, 4, 256, 256] logits and their gradients),
the kernel gradients' transposes 167 ms. XLA's oneDNN and XNNPACK convolution options,
passed per compilation, left the forward convolutions' numbers bit-identical (not
applied in this jaxlib); YNNPACK's made them slower (32x32 64->64: 25.3 against 14.3 ms).
Also tried for sampling: the attention's (image, head) pairs in groups of 8 (2 MB of
weights) one after another (lax.map): the core's forward alone 26.8 -> 14.5 ms, the
samples bit-identical, but the whole 18-step sampler no faster (23.3 / 23.0 / 23.6 s
against 22.6 / 23.6 / 24.1 s, alternating, one process); not kept.

Since 2026-12-05 each side runs in a process of its own (side_by_side.Worker; in one
process the two frameworks slowed each other's next steps, classifier_throughput.py's
docstring), ours with the entry points' huge-page malloc (medgan_jax/launch.py), and
training rounds start after one untimed step. That evening (AMD EPYC, 00:42): training
14.5 against 16.8 images/s (2213 against 1905 ms per step, 0.86x), sampling 1.3 against
1.6 images/s (23.9 against 20.1 s, 0.84x). Each side alone (a one-off script, 4 steps,
00:00): ours 2.33 s per step with glibc's defaults (about 260,000 page faults per step)
and 2.0-2.1 s with huge pages, PyTorch's 1.9 and 1.75 s.

2026-12-05 morning (AMD EPYC, one-off scripts unless the command is named). The
arithmetic is the same on both sides: PyTorch's FlopCounterMode counts 288.4 GFLOP for
diffusers' U-Net forward and backward (96.2 forward) against XLA's 290.6 for our step,
so the gap is the rate. torch.profiler per step: convolution_backward 924 ms,
mkldnn_convolution 433, scaled_dot_product_attention 154 (forward and backward),
mm 109, GroupNorm 40, SiLU 36. The U-Net's 3x3 forward convolutions alone, XLA against
PyTorch (NCHW, as here), weighted by how often each shape occurs: 431 against 427 ms
(64 -> 64 at 32x32 14.1 against 18.7 ms; 128 -> 64 29.0 against 22.0). The sampler
compiled with YNNPACK's dot and elementwise fusions (`compiler_options` per program)
ran 23.1 against 25.3 s (median of 3) beside the plain compilation in one process, but
in processes of their own (3 alternating pairs of 2 samples) 23.2-24.4 against
22.7-24.8 s, and this script at 05:43 with it: training 14.3 against 17.1 images/s
(0.84x), sampling 24.5 against 20.4 s (0.83x); reverted (several compiled programs in
one process slow some of them: in-process A/Bs mislead here). No gain either, in
processes of their own: the sampler's batch as 2 or 4 independent U-Net calls in one
program (22.0-24.6 s for all three), XLA's concurrency-optimised scheduler on or off
and single-threaded Eigen (23.1-25.3 s). Profiling caveat: a script that does not
re-execute with the entry points' huge-page tunable times page faults, not kernels
(SiLU of [32, 32, 32, 192] 6.9 ms without it, 1.5 with; PyTorch's 1.3).

2026-12-05, later (AMD EPYC; one-off scripts, each variant in processes of its own,
unless the command is named). The network the preset trains (configs/diffusion.py:
synthetic_lesions, 64x64x3, width 64 x (1, 2, 2, 2), 8,952,067 parameters),
`--image-size 64 --channel-mult 1,2,2,2 --batch 32 --steps 3 --sample-batch 16` at
08:26: training 10256 against 10211 ms per step (1.00x; 1105.5 against 1114.5 GFLOP),
sampling 43.6 against 36.0 s (0.83x). PyTorch's sampler there, 6 Heun steps: 1378-1533
ms per network evaluation in a process that had not trained (3.2 million page faults and
7.6 s of system time per call), 1010-1033 ms after 5 training steps in the same process
(no faults; also with the weights reset to their initial values after training, and
torch.set_flush_denormal(True) changed nothing: the allocator's state, not the numbers);
ours 1177-1224 ms either way. At 32x32, batch 32: ours 651-748 ms, PyTorch's 670-701
without training, 574-613 after. Hence the second sampling section above; with it, the
same command at 09:02: training 9678 against 10620 ms (1.10x), sampling after training
44.8 against 40.1 s (0.89x; 87.4 against 79.6 CPU-s per call), in processes that only
sample 46.9 against 54.2 s (1.16x; PyTorch's 10.4 million page faults per call), and the
defaults at 08:52: training 2041 against 1883 ms (0.92x), sampling 23.9 against 20.2 s
after training (0.85x; 46.1 against 40.2 CPU-s), 23.0 against 21.9 s in processes that
only sample (0.95x; PyTorch's 1.1 million page faults). Also measured: the U-Net's 3x3
convolutions by component against PyTorch's (NCHW, batch 32, ms, forward / input
gradient / kernel gradient): 32x32 64->64 15.5 / 13.9 / 16.5-20.2 against 16.8-18.6 /
17.5-18.8 / 18.3-18.7, 32x32 192->64 42.5 / 34.5 / 41.9-72.0 against 33.0-33.9 /
48.3-49.5 / 39.8-40.0, 16x16 128->128 11.4-11.6 / 11.5-11.8 / 13.2-13.6 against
10.0-10.1 / 10.2-10.3 / 11.4-11.6: XLA's forward is the slower pass where the input is
wide and at 16x16, so the forward-only sampler trails more than training. Not kept,
within the noise of the step (2.10-2.45 s) and the sampler (22.1-26.5 s) in 2 x 4
alternating processes: the attention's (image, head) pairs in cache-sized groups
(lax.map; the core's forward alone 18-27 -> 15-18 ms) and GroupNorm's statistics from
one pass over x (each pixel's group sums of x and x^2, then a product with ones; in one
forward's profile the x^2 pass and the two products, 18.7 ms, became 12.8). XLA's
--xla_cpu_use_onednn, --xla_cpu_experimental_onednn_custom_call, --xla_cpu_use_xnnpack
and --xla_cpu_use_acl left the convolutions' outputs bit-identical (not applied in this
jaxlib). The same sampler program, called again in one process, took 22.5-24.9 s
(43.5-47.8 CPU-s; the VM's steal time 0.5%): compare ratios over several rounds, not
single runs.

With jemalloc preloaded for our side (medgan_jax/launch.py; 2026-12-05, same machine):
ours alone (one-off, two processes each) 2050-2301 ms per step and 23.1-25.8 s per
sampler call against 2278-2337 ms and 22.6-24.6 s on glibc's malloc. This script, with
glibc's malloc_trim on PyTorch's side between rounds as well (since dropped): at 11:45
training 2290 against 1838 ms (0.80x), sampling after training 25.9 against 19.8 s
(0.76x), only sampling 23.2 against 22.3 s (0.96x); at 11:53 with MEDGAN_JAX_JEMALLOC=0
0.91x, 0.97x (PyTorch's sampler after training 23.5 s) and 0.89x. At 12:01, as now (only
our side releases, what jemalloc keeps): 2212 against 1914 ms (0.87x), 23.7 against
20.5 s (0.86x) and 24.7 against 24.0 s (0.97x). No difference beyond the noise.

2026-12-05 evening (an AMD EPYC host about twice as fast, XLA's matmul at 444 GFLOP/s),
this script at 21:51: training 1071 against 999 ms (0.93x), sampling 11.2 against 11.0 s
(0.98x), only sampling 12.4 against 12.6 s (1.01x). torch.profiler of PyTorch's step
(951 ms that hour): convolution_backward 398 ms, mkldnn_convolution 204, flash attention
backward 85 and forward 37, mm 81, everything else about 120; jax.profiler of ours (1030-
1512 ms per traced step, the same program, varying with the hour) puts its dots at
135-180 ms, under PyTorch's attention and mm, and its elementwise fusions (GroupNorm,
SiLU, the attention's softmax, layout copies) at 250-400 ms against PyTorch's 120: no
single op above 7 ms, so nothing left to rewrite one op at a time. The nearest upsample
and 3x3 conv as layers.upsample_conv3x3 again (also no reduce-window gradient for the
repeat), ours alone in 5 alternating pairs of processes: training 1009 / 1135 / 1037 /
1222 / 1002 against 1071 / 1079 / 1133 / 1050 / 1026 ms, a 6-step sampler 3.24-3.90
against 3.43-3.65 s: at most a few percent, not kept (it would change the README's
trained model's float path).

2026-12-06 (the same AMD EPYC host type, XLA's matmul at 444 GFLOP/s; one-off scripts
in /tmp unless the command is named). jax.profiler of our step blamed the elementwise
passes over the [N, H, W, C] maps, which run at this VM's memory rate (an exp over a
33.5 MB array, read and written, takes 7-10 ms: about 9 GB/s): XLA merged the SiLU's
sigmoid in the backward pass with the forward's, so the forward wrote it to memory for
the backward to read, in two fusions. layers.group_norm_silu (GroupNorm and SiLU as one
op, exact to float rounding, tested against nn.silu of flax's GroupNorm) writes only
its output and recomputes the sigmoid from x in the backward pass, written differently
so that XLA cannot merge the two; the profile's elementwise fusions 522 -> 432 ms per
step. Then each softmax row shifted by its own diagonal logit where a Cauchy-Schwarz
bound keeps the row within exp(60) of it (layers._softmax_shift, else the row max): no
pass over the logits for their maxima (the attention core, forward and backward, 39.8-
48.9 -> 36.5-38.3 ms). Our step alone in 4 x 3 alternating processes (min of 8 steps):
session start 1246-1281 ms, with the fused op 1204-1251, with both 1191-1223; per
network evaluation of the sampler 360-368, 355-372, 344-351 ms. This script (with
--sample-steps 3, 2 x 2 alternating runs, 00:55-01:05): training 1062 / 1086 against
1071 / 1123 ms before the attention change, sampling 1712 / 1738 against 1823 / 1818 ms
per call, PyTorch 974-985 ms and 1501-1546 ms throughout. Our side moved more over the
hour than PyTorch's (994 ms per step at 00:00, 1121 at 00:48; PyTorch 979 and 984).
Tried and not kept: the attention in chunks of 4 images whose logits stay in cache
(lax.map with rematerialisation; the core alone 46-48 -> 17-33 ms forward and backward,
but the whole step 1144-1214 -> 1217-1296 ms, as the earlier lax.map attempts); the 3x3
kernel gradient as one GEMM of x against dy shifted to the 9 taps (2-7x slower than
XLA's convolution with its transposes) and the forward as x times the 9 taps' kernels
then shifted sums (3-7x slower; XLA's forward convolutions run at 370-480 GFLOP/s here);
GroupNorm's sums as reductions (3x slower than the products with ones); the XLA flags
--xla_cpu_experimental_onednn_fusion_type=dot,
--xla_cpu_experimental_xnn_fusion_type=dot,
--xla_cpu_enable_concurrency_optimized_scheduler,
--xla_cpu_experimental_enable_tiling_propagation and --xla_cpu_enable_fast_math (none
faster than the default, one process each). What remains is spread thin: the kernel
gradients' layout transposes (105-119 ms per step), the attention's products (134-155
ms; PyTorch's fused attention 122 ms forward and backward), GroupNorm's passes.

Later that day the profile's largest transpose (14 ms) was the upsampling conv's input,
the 2x nearest-upsampled map, moved to [C, H, W, N] for the kernel gradient. The U-Net's
upsampling is now one 2x2 conv of the input padded by a pixel, the four output phases'
summed 3x3 taps its output channels (layers.upsample_conv3x3_as_one; equal to upsample
then conv in value and gradient, tested; the same parameters): 16/36 of the FLOPs, and
its kernel gradient transposes the input rather than the 4x larger upsampled map. Alone
(one-off, batch 32, 128 channels, forward and backward): 16x16 -> 32x32 88.4 -> 38.2 ms,
8x8 -> 16x16 18.1 -> 13.2 ms (PGGAN's four separate 2x2 convs: 52.7 and 12.7 ms). Our
step and sampler alone, 3 x 2 alternating processes (min of 8 steps; per evaluation of a
4-step sampler): before 1060 / 950 / 952 ms and 332 / 288 / 290 ms, after 1009 / 910 /
937 ms and 326 / 279 / 282 ms; XLA's count 289.6 -> 272.9 GFLOP per step; transposes in
the profile 129 -> 96 ms per step. This script (defaults) at 03:40 and 03:50: training
1035 against 949 ms (0.92x) and 1071 against 951 ms (0.89x), sampling after training
10.6 against 10.7 s (1.01x) and 11.5 against 10.8 s (0.94x), in sampling-only processes
9.6 against 11.6 s (1.21x) and 10.7 against 12.7 s (1.19x). The profile still blames
memory passes: the decoder's GroupNorm+SiLU over the concatenated skip inputs at 32x32
(6-8 ms each where the 64-channel ones take 1.4 ms: 33 MB read and written leaves the
cache), the attention logits (7.7 ms per [32, 4, 256, 256] product), the transposes.
The preset's network (--image-size 64 --channel-mult 1,2,2,2 --batch 32 --steps 3
--sample-batch 16) at 04:07 and 04:15: training 3388 against 4539 ms (1.34x) and 3506
against 4663 ms (1.33x); sampling (batch 16) after training 17.5 against 18.3 s (1.04x)
and 19.2 against 17.2 s (0.89x); sampling-only 17.6 against 29.9 s (1.70x) and 19.3
against 30.3 s (1.57x; PyTorch's 10.7-11.0 million page faults per call there).

2026-12-06, later (same host type; one-off scripts in /tmp). This script at 04:52, as
the session began: training 1056 against 1030 ms (0.98x), sampling 12.0 against 11.0 s
after training (0.92x), 10.4 against 13.5 s sampling-only (1.30x). GroupNorm+SiLU alone
against PyTorch's group_norm and silu (NCHW, batch 32; forward / forward and backward,
ms): 32x32x192 5.3 / 8.9 against 1.9 / 11.7, 32x32x128 2.8 / 5.2 against 1.0 / 4.4,
32x32x64 1.3 / 2.5 against 2.2 / 2.4: our forward, the sampler's, two to three times
PyTorch's on the decoder's wide maps. XLA:CPU fused the statistics' small arithmetic (the
repeat of each group's mean and 1/std over its channels, the rsqrt) into every pass over
the maps and redid it per element; computed once into a buffer (layers._per_channel)
and with the statistics from one pass over x (each pixel's group sums of x and x^2, a
reduce over the minor axis, then a product with ones; layers._group_statistics) instead
of writing x^2 out for a product of its own: 5.3 -> 2.2 / 8.7 -> 6.4, 2.8 -> 1.3 / 5.0
-> 3.7, 1.3 -> 0.7 / 2.4 -> 1.5 ms (tested equal to flax's in value and gradient, as
before). Our step alone, 3 x 2 alternating processes (/tmp/s38/ab.py, min of 8): 919-
1039 against 937-1041 ms, per sampler evaluation 274-316 against 290-322 ms: within this
host's noise that hour. Then the allocator: in this script's training rounds our side
faulted 20,000-30,000 pages in per step even after its settling steps, and alone (no
hand-back) it did too, its resident memory growing by 100-200 MB every six steps (3.4 GB
to 6.6 GB over 72 steps, 1050-1100 ms per step). With oversize_threshold:0 jemalloc served
large buffers from per-thread arenas, and one freed by one thread could not serve the
next step's allocation from another. Without it (its one arena for large allocations,
which keeps the decay -1 of the others since the default is not positive): 3.76 GB held
from the second step on, 0-30 faults per step, 955-990 ms; glibc's malloc (hugetlb=1)
2.76 GB, 919-960 ms with every third step or so at 1170-1350 ms. launch.JEMALLOC_CONF
since then. This script afterwards (the per-step page faults printed since): at about 05:30,
training 987 against 994 ms (1.01x), sampling 9.9 against 11.4 s after training (1.15x),
9.8 against 13.1 s sampling-only (1.33x); at 05:52 1076 against 1067 ms (0.99x; our side
21,033 faults per timed step after the hand-back and four settling steps), 11.1 against
11.5 s (1.04x), 11.3 against 13.8 s (1.22x); at 06:15 944 against 995 ms (1.05x; 2,543
faults per step), 10.3 against 11.2 s (1.09x), 10.3 against 13.3 s (1.29x); training
rounds alone (/tmp/s40/train_ab.py: this script's workers, 4 rounds of 5 steps): medians
962 against 1045, 978 against 1053 and (the workers' sampler run at 18 steps first, as
here) 946 against 1014 ms. The preset's network (--image-size 64 --channel-mult 1,2,2,2
--batch 32 --steps 3 --sample-batch 16) at 06:03: training 3435 against 4927 ms (1.43x),
sampling after training 17.9 against 19.4 s (1.08x), sampling-only 18.6 against 32.2 s
(1.73x). Not kept (alone, no gain): the attention's backward as a custom VJP with every
product in a non-transposed orientation (the [T, T] operands' transposed-LHS products
take 3-4 times as long as the others here: 5.7 against 1.8 ms at [128, 256, 256] x
[128, 256, 32]; the core with it 22.6 against 21.9 ms forward and backward), the upsampling's
phase cotangents as one stack instead of four full-size pads summed (26-29 against 26
ms, bit-identical), the attention's query, key and value as one product of the
concatenated kernels (the block, forward and backward, 39.2 against 37.4 ms), sigmoid as
0.5 tanh(z / 2) + 0.5 (0.68 against 0.78 ms forward over 32x32x32x128), jemalloc's
thp:always (0.93x, 1.02x, 1.12x in one run of this script), and 3x3 convolutions by
Winograd's F(2x2, 3x3) and F(4x4, 3x3) written in jnp (forward 0.9-1.6x of XLA's,
forward and backward 0.5-1.15x: the tile transforms' passes cost what the products save;
XLA's forward convolutions run at 380-440 GFLOP/s here).

PyTorch (CPU build) and diffusers are benchmark-only dependencies:
  pip install torch==2.13.0 diffusers
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side  # noqa: E402
from benchmarks.classifier_throughput import jax_version, platform_cpu  # noqa: E402
from benchmarks.dcgan_layers import best_matmul_gflops, compiled_gflop  # noqa: E402
from medgan_jax import launch  # noqa: E402

SIGMA_DATA, P_MEAN, P_STD = 0.5, -1.2, 1.2


def our_config(args):
    from configs.diffusion import get_config

    config = get_config("synthetic_lesions")
    config.data.image_size = args.image_size
    config.diffusion.update(
        width=args.width,
        channel_mult=args.channel_mult,
        num_res_blocks=args.res_blocks,
        attention_resolutions=args.attention,
        head_dim=args.head_dim,
        num_groups=args.groups,
        dropout=0.0,
        warmup_steps=0,
        xflip=False,
        sample_steps=args.sample_steps,
    )
    config.gan.g_lr = 1e-4
    return config


def jax_sides(args, images, train: bool = True):
    """(train step, sample call, parameter count, step GFLOP) of this project's code;
    without `train`, the step is neither compiled nor returned (None, None)."""
    import jax

    from medgan_jax import parallel, training
    from medgan_jax.gan import diffusion

    config = our_config(args)
    mesh = parallel.make_mesh(1)
    denoiser, _ = diffusion.build(config, 0)
    state = diffusion.create_state(config, denoiser, parallel.replicated(mesh))
    params = sum(p.size for p in jax.tree.leaves(state.g_params))
    holder = {"state": state}
    _, generate = diffusion.generate_programs(denoiser, diffusion.Sampler.from_config(config))
    n = args.sample_batch
    z = jax.random.normal(jax.random.PRNGKey(0), (n, args.image_size**2 * 3))
    sample_labels = np.zeros(n, np.int32)

    def sample():
        return jax.block_until_ready(generate(holder["state"].ema_params, {}, z, sample_labels))

    if not train:
        return None, sample, params, None
    step_fn = training.jit_step(diffusion.make_train_step(denoiser, config), mesh)
    labels = np.zeros(len(images), np.int32)
    batch = parallel.host_to_global({"image": images, "label": labels}, mesh)
    compiled = step_fn.lower(state, batch).compile()

    def train_step():
        holder["state"], metrics = compiled(holder["state"], batch)
        return float(jax.block_until_ready(metrics["loss"]))

    return train_step, sample, params, compiled_gflop(compiled)


def torch_unet(args):
    from diffusers import UNet2DModel

    levels = len(args.channel_mult)
    resolutions = [args.image_size // 2**i for i in range(levels)]
    attend = [r in args.attention for r in resolutions]
    return UNet2DModel(
        sample_size=args.image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(args.width * m for m in args.channel_mult),
        layers_per_block=args.res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attend),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attend)),
        norm_num_groups=args.groups,
        attention_head_dim=args.head_dim,
    )


def torch_sides(args, images):
    """(train step, sample call, parameter count) of the same network in PyTorch eager."""
    import torch

    net = torch_unet(args)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    y = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    def denoise(x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        total = s**2 + SIGMA_DATA**2
        c_skip, c_out, c_in = SIGMA_DATA**2 / total, s * SIGMA_DATA / total.sqrt(), total.rsqrt()
        return c_skip * x + c_out * net(c_in * x, sigma.log() / 4).sample

    def train_step():
        sigma = (P_MEAN + P_STD * torch.randn(len(y))).exp()
        noisy = y + sigma.view(-1, 1, 1, 1) * torch.randn_like(y)
        weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
        loss = (weight * ((denoise(noisy, sigma) - y) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    from medgan_jax.gan.diffusion import Sampler

    levels = torch.from_numpy(Sampler(num_steps=args.sample_steps).sigmas())
    n = args.sample_batch
    noise = torch.randn(n, 3, args.image_size, args.image_size)

    @torch.no_grad()
    def sample():
        x = noise * levels[0]
        full = lambda t: torch.full((n,), float(t))
        for t, t_next in zip(levels[:-2], levels[1:-1]):
            slope = (x - denoise(x, full(t))) / t
            x_euler = x + (t_next - t) * slope
            x = x + (t_next - t) * 0.5 * (
                slope + (x_euler - denoise(x_euler, full(t_next))) / t_next
            )
        return denoise(x, full(levels[-2])).clamp(-1, 1)

    return train_step, sample, params


def torch_gflop(step) -> float:
    """GFLOP of one call of `step` by PyTorch's FLOP counter (matrix products,
    convolutions and attention; like XLA's count, dominated by them)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def time_sampling(workers: dict, args, torch_info: dict) -> tuple[dict, float]:
    """`args.sample_rounds` alternating sampler calls of the workers, then closed: images/s
    of each side and the ratio, printed with each side's page faults and process CPU
    seconds per call."""
    replies = side_by_side.alternate(workers, "sample", 1, args.sample_rounds)
    rates, ratio = side_by_side.print_rates(replies, args.sample_batch, torch_info)
    print_costs(replies, "call")
    for worker in workers.values():
        worker.close()
    return rates, ratio


def print_costs(replies: dict[str, list], unit: str) -> None:
    """Each side's page faults and process CPU seconds per timed `unit`, averaged over its
    rounds: memory a process keeps mapping in shows here (and in its wall time)."""
    line = ", ".join(
        f"{name} {statistics.mean(r['page_faults'] for r in rounds):,.0f} page faults, "
        f"{statistics.mean(r['cpu'] for r in rounds):.1f} CPU-s"
        for name, rounds in replies.items()
    )
    print(f"  per {unit}: {line}")


def serve_side(args) -> None:
    """A worker process: one side's train step and sampler (`--sampler-only`: the sampler
    alone, nothing trained before), warmed up, timed on request."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (args.batch, args.image_size, args.image_size, 3))
    images = images.astype(np.float32)
    if args.worker == "jax":
        from medgan_jax import app  # its XLA flags must precede jax's backend start-up

        app.configure(compilation_cache="", distributed=False)
        start = time.perf_counter()
        train, sample, params, gflop = jax_sides(args, images, train=not args.sampler_only)
        info = {"parameters": params, "gflop": gflop, "compile_s": time.perf_counter() - start}
    else:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        train, sample, params = torch_sides(args, images)
        gflop = None if args.sampler_only else torch_gflop(train)
        info = {"parameters": params, "gflop": gflop, **side_by_side.torch_build()}
    handlers = {"sample": side_by_side.timed(sample, warm=0)}
    if not args.sampler_only:
        train(), train()  # compile / warm up
        handlers["train"] = side_by_side.timed(train)
    sample()
    side_by_side.serve(lambda: (info, handlers))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ints = lambda text: tuple(int(v) for v in text.split(",") if v)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--channel-mult", type=ints, default=(1, 2, 2))
    parser.add_argument("--res-blocks", type=int, default=2)
    parser.add_argument("--attention", type=ints, default=(16,), help="resolutions")
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed train steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, default=18)
    parser.add_argument("--sample-batch", type=int, default=32)
    parser.add_argument("--sample-rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--sampler-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve_side(args)
    launch.reexec_with_malloc_tunables()  # our side runs as the entry points do
    from medgan_jax import app

    app.configure(compilation_cache="", distributed=False)
    peak = best_matmul_gflops()
    print(
        f"best f32 matmul (XLA, 4096x4096): {peak:.0f} GFLOP/s; {platform_cpu()}, "
        f"jax {jax_version()}, {os.cpu_count()} CPUs; each side in its own process, "
        f"ours with {launch.allocator(os.environ)}"
    )
    workers = side_by_side.start_workers(__file__, sys.argv[1:])
    ours, torch_info = workers["medgan_jax"].info, workers["pytorch"].info
    print(f"our step and sampler compiled in {ours['compile_s']:.0f} s")
    if ours["parameters"] != torch_info["parameters"]:
        raise SystemExit(f"parameter counts differ: ours {ours}, diffusers {torch_info}")
    print(
        f"U-Net {args.image_size}x{args.image_size}x3, width {args.width} x "
        f"{args.channel_mult}, {args.res_blocks} res blocks, attention at {args.attention}: "
        f"{ours['parameters']:,} parameters on both sides"
    )
    print(f"training step, batch {args.batch}:")
    replies = side_by_side.alternate(workers, "train", args.steps, args.rounds)
    train, train_ratio = side_by_side.print_rates(replies, args.batch, torch_info)
    print_costs(replies, "step")
    gflop, step_s = ours["gflop"], args.batch / train["medgan_jax"]
    print(
        f"our step: {gflop:.1f} GFLOP (XLA's count; PyTorch's FLOP counter "
        f"{torch_info['gflop']:.1f} for its step), {gflop / step_s:.0f} GFLOP/s = "
        f"{gflop / step_s / peak:.0%} of the matmul rate"
    )
    evaluations = 2 * args.sample_steps - 1
    print(
        f"sampling, {args.sample_steps} Heun steps ({evaluations} evaluations), "
        f"batch {args.sample_batch}:"
    )
    sampling, sample_ratio = time_sampling(workers, args, torch_info)
    print("sampling again, each side in a new process that only samples (a sampling script):")
    workers = side_by_side.start_workers(__file__, [*sys.argv[1:], "--sampler-only"])
    sampler_only, sampler_only_ratio = time_sampling(workers, args, torch_info)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform_cpu(),
        "jax": jax_version(),
        "torch": torch_info["version"],
        "our_allocator": launch.allocator(os.environ),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "parameters": ours["parameters"],
        "train_images_per_s": train,
        "train_ratio": train_ratio,
        "train_step_gflop": gflop,
        "torch_train_step_gflop": torch_info["gflop"],
        "matmul_gflops": peak,
        "sample_images_per_s": sampling,
        "sample_ratio": sample_ratio,
        "sampler_only_images_per_s": sampler_only,
        "sampler_only_ratio": sampler_only_ratio,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "diffusion_throughput.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
