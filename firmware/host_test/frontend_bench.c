/* Host benchmark of the C micro front end: clips/s of MicroFrontendProcessBatch (one call per
 * chunk of clips, chunks shared among threads as the training pipeline's Python threads would)
 * and of the per-frame path (MicroFrontendProcessClip per clip).
 *
 *   frontend_bench [--clips N] [--samples S] [--threads T] [--chunk K] [--reps R] [--per-clip]
 *
 * Wall-clock rates depend on what else the machine runs; clips per CPU second (process CPU time,
 * all threads) is the per-core rate.
 * Audio: deterministic pseudo-random noise at levels from 1 to 32767 (a new level per clip),
 * clips starting from non-zero noise estimates. Prints one line per repetition and the median.
 * Build (Linux):
 *   gcc -std=c99 -O3 -fno-math-errno -I TABLES_DIR -I firmware firmware/micro_frontend.c \
 *       firmware/host_test/frontend_bench.c -o frontend_bench -lpthread */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "micro_frontend.h"

typedef struct {
  const int16_t* audio;
  uint32_t* noise;
  uint16_t* out;
  size_t clips, samples, frames, chunk, per_clip;
  size_t* next; /* next chunk's first clip, shared */
  pthread_mutex_t* lock;
} Work;

static double Clock(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void* Run(void* arg) {
  Work* w = (Work*)arg;
  for (;;) {
    size_t first, n, i;
    pthread_mutex_lock(w->lock);
    first = *w->next;
    *w->next += w->chunk;
    pthread_mutex_unlock(w->lock);
    if (first >= w->clips) break;
    n = w->clips - first < w->chunk ? w->clips - first : w->chunk;
    if (w->per_clip) {
      for (i = first; i < first + n; ++i) {
        MicroFrontendState state;
        memcpy(state.noise_estimate, w->noise + i * MF_NUM_CHANNELS, sizeof(state.noise_estimate));
        MicroFrontendProcessClip(&state, w->audio + i * w->samples, w->samples, w->out + i * w->frames * MF_NUM_CHANNELS);
        memcpy(w->noise + i * MF_NUM_CHANNELS, state.noise_estimate, sizeof(state.noise_estimate));
      }
    } else {
      MicroFrontendProcessBatch(w->audio + first * w->samples, n, w->samples, w->noise + first * MF_NUM_CHANNELS,
                                w->out + first * w->frames * MF_NUM_CHANNELS);
    }
  }
  return NULL;
}

static int Compare(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  size_t clips = 1024, samples = 16000, chunk = 64, reps = 7, threads = 1, per_clip = 0, i, r, t;
  int16_t* audio;
  uint32_t *noise, *noise0;
  uint16_t* out;
  double rates[101], cpu_rates[101];
  uint32_t seed = 1;
  for (i = 1; i < (size_t)argc; ++i) {
    const char* a = argv[i];
    const size_t v = i + 1 < (size_t)argc ? (size_t)strtoul(argv[i + 1], NULL, 10) : 0;
    if (!strcmp(a, "--per-clip")) {
      per_clip = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "usage: %s [--clips N] [--samples S] [--threads T] [--chunk K] [--reps R] [--per-clip]\n", argv[0]);
      return 2;
    }
    if (!strcmp(a, "--clips")) clips = v;
    else if (!strcmp(a, "--samples")) samples = v;
    else if (!strcmp(a, "--threads")) threads = v;
    else if (!strcmp(a, "--chunk")) chunk = v;
    else if (!strcmp(a, "--reps")) reps = v;
    else {
      fprintf(stderr, "unknown option %s\n", a);
      return 2;
    }
    ++i;
  }
  if (reps > 101) reps = 101;
  if (threads > 64) threads = 64;
  audio = (int16_t*)malloc(clips * samples * sizeof(int16_t));
  noise = (uint32_t*)malloc(clips * MF_NUM_CHANNELS * sizeof(uint32_t));
  noise0 = (uint32_t*)malloc(clips * MF_NUM_CHANNELS * sizeof(uint32_t));
  out = (uint16_t*)malloc(clips * (MicroFrontendNumFrames(samples) + 1) * MF_NUM_CHANNELS * sizeof(uint16_t));
  if (!audio || !noise || !noise0 || !out) return 1;
  for (i = 0; i < clips; ++i) {
    const int32_t level = 1 + (int32_t)((i * 2654435761u) % 32767u);
    size_t j;
    for (j = 0; j < samples; ++j) {
      int32_t x;
      seed = seed * 1664525u + 1013904223u;
      x = (int32_t)((seed >> 16) & 0xFFFF) - 32768;
      audio[i * samples + j] = (int16_t)(x * level / 32768);
    }
    for (j = 0; j < MF_NUM_CHANNELS; ++j) noise0[i * MF_NUM_CHANNELS + j] = (uint32_t)((i * 7 + j * 13) % 5000) * 100;
  }
  printf("%s, %zu clips x %zu samples, %zu thread(s), chunk %zu, lanes %d, stack scratch %zu bytes\n",
         per_clip ? "per clip (MicroFrontendProcessClip)" : "batch (MicroFrontendProcessBatch)", clips, samples, threads, chunk,
         MF_BATCH_LANES, MicroFrontendBatchStackBytes());
  for (r = 0; r < reps; ++r) {
    pthread_t th[64];
    Work w[64];
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    size_t next = 0;
    double t0, c0, dt, dc;
    memcpy(noise, noise0, clips * MF_NUM_CHANNELS * sizeof(uint32_t));
    t0 = Clock(CLOCK_MONOTONIC);
    c0 = Clock(CLOCK_PROCESS_CPUTIME_ID);
    for (t = 0; t < threads; ++t) {
      w[t].audio = audio;
      w[t].noise = noise;
      w[t].out = out;
      w[t].clips = clips;
      w[t].samples = samples;
      w[t].frames = MicroFrontendNumFrames(samples);
      w[t].chunk = chunk;
      w[t].per_clip = per_clip;
      w[t].next = &next;
      w[t].lock = &lock;
      pthread_create(&th[t], NULL, Run, &w[t]);
    }
    for (t = 0; t < threads; ++t) pthread_join(th[t], NULL);
    dt = Clock(CLOCK_MONOTONIC) - t0;
    dc = Clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
    rates[r] = (double)clips / dt;
    cpu_rates[r] = (double)clips / dc;
    printf("  rep %zu: %.0f clips/s wall, %.0f clips per CPU second\n", r, rates[r], cpu_rates[r]);
  }
  qsort(rates, reps, sizeof(double), Compare);
  qsort(cpu_rates, reps, sizeof(double), Compare);
  printf("median %.0f clips/s wall, %.0f clips per CPU second (%.1f us CPU per clip)\n", rates[reps / 2], cpu_rates[reps / 2],
         1e6 / cpu_rates[reps / 2]);
  {
    /* A checksum, so the work cannot be optimized away and runs can be compared. */
    uint64_t sum = 0;
    const size_t total = clips * MicroFrontendNumFrames(samples) * MF_NUM_CHANNELS;
    for (i = 0; i < total; ++i) sum = sum * 31 + out[i];
    printf("checksum %016llx\n", (unsigned long long)sum);
  }
  free(audio);
  free(noise);
  free(noise0);
  free(out);
  return 0;
}
