#!/usr/bin/env bash
# Train every checkpoint shipped in assets/ from the phantom demo data set, on a CPU.
# One documented command: bash scripts/train_demo_assets.sh [WORKDIR]
# Steps (each resumable; rerun the script after an interruption):
#   1. phantom a4c demo set (125 patients x 4 videos, seed 0)
#   2. frame VAE (AutoencoderKL, 4x14x14 latents), best by low-passed PSNR on TEST patients
#   3. latent cache of every frame (+ 8 disguised copies of every 8th frame per video)
#   4. latent re-ID network (siamese, trained on disguised copies and hard negatives), best by VAL AUC
#   5. regular generator on every TRAIN video; memorizing generator on 16 TRAIN videos
#   6. copy the best weights into assets/ (fp16 for the generators) and write assets/demo.json
# REID_ONLY=1 retrains only the privacy filter, with the shipped VAE (assets/vae), and
# exports only assets/reid: what changing the re-ID recipe needs (the generators stay).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs}
E=".venv/bin/echoaudit"
D="$W/data/a4c"
mkdir -p "$W"
[ -f "$D/FileList.csv" ] || $E phantom --out "$D" --patients 125 --videos-per-patient 4 --seed 0
if [ "${REID_ONLY:-0}" = 1 ]; then
  [ -f "$W/latents/cache.json" ] || $E encode --data "$D" --vae assets/vae --out "$W/latents"
  $E train reid --space latent --latents "$W/latents" --out "$W/reid"
  $E assets --runs "$W" --out assets --only reid
  exit 0
fi
$E train vae --data "$D" --out "$W/vae" --steps ${VAE_STEPS:-600} --eval-every 100
$E eval vae --vae "$W/vae/best" --data "$D"
[ -f "$W/latents/cache.json" ] || $E encode --data "$D" --vae "$W/vae/best" --out "$W/latents"
$E train reid --space latent --latents "$W/latents" --out "$W/reid"
$E train diffusion --latents "$W/latents" --out "$W/gen_regular" --steps ${GEN_STEPS:-1500}
$E train diffusion --latents "$W/latents" --out "$W/gen_memorizing" --subset 16 --steps ${MEM_STEPS:-1200}
$E assets --runs "$W" --out assets
