// rng.h: counter-based random numbers. Every draw is a pure function of (seed, counter),
// so results do not depend on thread count, call order or how work is split.
#ifndef CONFLUX_RNG_H
#define CONFLUX_RNG_H

#include <stdint.h>

// 64 random bits for (seed, counter): two rounds of the splitmix64 finalizer over a
// Weyl-sequence combination of seed and counter.
static inline uint64_t cx_rng_u64(uint64_t seed, uint64_t counter) {
    uint64_t z = seed * 0xD1B54A32D192ED03ull + (counter + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    z += seed ^ 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// uniform float in [0, 1) with 24 random bits
static inline float cx_rng_uniform(uint64_t seed, uint64_t counter) {
    return (float)(cx_rng_u64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

// standard normal (Box-Muller on two counter draws)
float cx_rng_normal(uint64_t seed, uint64_t counter);

// derive an independent stream seed from a parent seed and a tag
static inline uint64_t cx_rng_derive(uint64_t seed, uint64_t tag) {
    return cx_rng_u64(seed ^ 0xA0761D6478BD642Full, tag);
}

#endif
