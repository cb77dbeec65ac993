#!/usr/bin/env bash
# The paper's cross-data-set table on phantom views: train a re-ID model on one view, test
# it on every view, in latent and in image space (same width, pairs and epochs per space).
# Usage: bash scripts/cross_view.sh [WORKDIR] [VAE]   -> WORKDIR/cross_view/{*.csv,cross_view.html}
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/views}
VAE=${2:-assets/vae}
E=".venv/bin/echoaudit"
LAT=(); LATM=(); IMG=(); IMGM=()
for v in a4c psax pediatric; do
  [ -f "$W/$v/FileList.csv" ] || $E phantom --out "$W/$v" --view "$v" --patients ${PATIENTS:-40} --videos-per-patient 2 --frames 32 --seed 1
  [ -f "$W/$v-latents/cache.json" ] || $E encode --data "$W/$v" --vae "$VAE" --out "$W/$v-latents"
  [ -f "$W/reid-$v-latent/metrics.json" ] || $E train reid --space latent --latents "$W/$v-latents" --out "$W/reid-$v-latent" --epochs ${LATENT_EPOCHS:-15} --pairs 2048 --patience 15
  [ -f "$W/reid-$v-image/metrics.json" ] || $E train reid --space image --data "$W/$v" --out "$W/reid-$v-image" --epochs ${IMAGE_EPOCHS:-4} --pairs 2048 --patience 15
  LATM+=(--latent-model "$v=$W/reid-$v-latent/best"); LAT+=(--latents "$v=$W/$v-latents")
  IMGM+=(--image-model "$v=$W/reid-$v-image/best"); IMG+=(--data "$v=$W/$v")
done
$E eval reid --out "$W/cross_view" "${LATM[@]}" "${LAT[@]}" "${IMGM[@]}" "${IMG[@]}" --pairs 1000
