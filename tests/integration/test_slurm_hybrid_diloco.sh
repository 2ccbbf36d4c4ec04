#!/usr/bin/env bash
# test_slurm_hybrid.sh in DiLoCo mode: the hybrid job (2 trainers + bridge, a volunteer) is
# signalled, checkpoints its outer state between rounds, requeues itself and resumes.
# usage: tests/integration/test_slurm_hybrid_diloco.sh BUILD_DIR DATA_DIR
SLURM_HYBRID_MODE=diloco exec bash "$(dirname "$0")/test_slurm_hybrid.sh" "$@"
