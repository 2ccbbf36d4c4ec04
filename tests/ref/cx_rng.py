"""cx_rng.py: conflux's counter-based random numbers (models/rng.h) in numpy, and the
dropout masks that the C ALBERT draws from them (models/albert.c, models/nn.h), for the
PyTorch reference (albert_golden.py --dropout).

Written from the definitions, not from the C loops:
  cx_rng_u64(seed, counter)     two rounds of the splitmix64 finalizer over the Weyl
                                combination seed * 0xD1B54A32D192ED03 + (counter + 1) *
                                0x9E3779B97F4A7C15, the second round after adding
                                seed ^ 0x632BE59BD9B4E019 (all mod 2^64)
  cx_rng_uniform(seed, counter) the top 24 bits / 2^24 (a float in [0, 1), exact)
  cx_rng_derive(seed, tag)      cx_rng_u64(seed ^ 0xA0761D6478BD642F, tag)
Inverted dropout (nn.h): element i of a site is dropped when uniform(site seed, offset + i)
< p; kept elements are scaled by the float 1 / (1 - p).

ALBERT's sites (albert.c): the run's dropout seed s is derived per site, and the counter is
the element's index in the site's tensor counted from the batch's first sample (global
sample index s0), so a sample draws the same mask whichever micro-batch it is in:
  emb      cx_rng_derive(s, 1)         LayerNorm(embeddings) (B, T, E):  counter (s0 * T * E) + index
  att[l]   cx_rng_derive(s, 100 + l)   attention probabilities (B, NH, T, T) of application l:
                                       counter (s0 * NH * T * T) + index
  out[l]   cx_rng_derive(s, 1000 + l)  attention.dense output (B, T, H) of application l:
                                       counter (s0 * T * H) + index
There is no dropout on the FFN output (Hugging Face's AlbertLayer does not apply its
self.dropout either) nor in the heads.
"""
import numpy as np

M64 = (1 << 64) - 1
SITE_EMB, SITE_ATT, SITE_OUT = 1, 100, 1000


def _u64(x):
    return np.asarray(x, dtype=np.uint64)


def cx_rng_u64(seed, counter):
    """64 random bits for (seed, counter); counter may be an array (uint64)."""
    with np.errstate(over="ignore"):
        s = np.uint64(seed & M64)
        z = s * np.uint64(0xD1B54A32D192ED03) + (_u64(counter) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        z = z + (s ^ np.uint64(0x632BE59BD9B4E019))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def cx_rng_uniform(seed, counter):
    return (cx_rng_u64(seed, counter) >> np.uint64(40)).astype(np.float64) / 16777216.0


def cx_rng_derive(seed, tag):
    return int(cx_rng_u64(seed ^ 0xA0761D6478BD642F, tag))


def dropout_scale_mask(seed, offset, shape, p):
    """(shape) float64 array: 0 where dropped, the float 1/(1-p) where kept."""
    n = int(np.prod(shape))
    u = cx_rng_uniform(seed, np.uint64(offset) + np.arange(n, dtype=np.uint64))
    p32 = np.float32(p)
    scale = np.float32(1.0) / (np.float32(1.0) - p32)
    return np.where(u < float(p32), 0.0, float(scale)).reshape(shape)


def albert_dropout_masks(c, B, T, seed, s0, p):
    """The scale masks of every dropout site of one ALBERT micro-batch (config c with
    embedding_size, hidden_size, num_heads, num_layers): dict emb (B,T,E), att [L x
    (B,NH,T,T)], out [L x (B,T,H)], numpy float64."""
    E, H, NH, L = c.embedding_size, c.hidden_size, c.num_heads, c.num_layers
    return {
        "emb": dropout_scale_mask(cx_rng_derive(seed, SITE_EMB), s0 * T * E, (B, T, E), p),
        "att": [dropout_scale_mask(cx_rng_derive(seed, SITE_ATT + l), s0 * NH * T * T,
                                   (B, NH, T, T), p) for l in range(L)],
        "out": [dropout_scale_mask(cx_rng_derive(seed, SITE_OUT + l), s0 * T * H, (B, T, H), p)
                for l in range(L)],
    }
