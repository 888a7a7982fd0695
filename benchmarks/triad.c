/* STREAM-style triad a[i] = b[i] + s * c[i] in double precision, OpenMP.
 * Reference for benchmarks/bench_bandwidth.py: prints the best bandwidth in bytes/s,
 * counted as STREAM does (3 arrays x 8 bytes per element, no write-allocate traffic).
 * Usage: triad N_ELEMENTS N_TIMES
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s N_ELEMENTS N_TIMES\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    int times = atoi(argv[2]);
    if (n < 1 || times < 1) {
        fprintf(stderr, "N_ELEMENTS and N_TIMES must be positive\n");
        return 2;
    }
    double *a, *b, *c;
    if (posix_memalign((void **)&a, 64, n * sizeof(double)) ||
        posix_memalign((void **)&b, 64, n * sizeof(double)) ||
        posix_memalign((void **)&c, 64, n * sizeof(double))) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* first touch by the threads that will use each page */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    const double s = 3.0;
    double best = 1e30;
    for (int k = 0; k < times + 1; k++) { /* run 0 is the warm-up */
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        double t = omp_get_wtime() - t0;
        if (k > 0 && t < best) best = t;
    }
    /* use the result so the loop cannot be removed */
    double check = 0.0;
    for (long i = 0; i < n; i += n / 16 + 1) check += a[i];
    printf("%.6e %d %.1f\n", 3.0 * 8.0 * (double)n / best, omp_get_max_threads(), check);
    free(a);
    free(b);
    free(c);
    return 0;
}
