/* The planar ranking of snapping's candidates, one point at a time (service/domain/ranking.py).

   What service/domain/snapping.py did with numpy over (points x candidates) blocks, done here in
   one loop per point: the same arithmetic in the same order (geodesy.plane_foot, Chains.bounds),
   so every value is bit for bit numpy's (tests/domain/test_ranking_kernel.py). Built with
   -ffp-contract=off (no fused multiply-adds) and never with -ffast-math (hatch_build.py); IEEE
   double throughout, no library function but sqrt, which is exact.

   The point's own limit needs geodesy.rank_ratio (trigonometry), which stays in numpy: rank()
   hands on every edge within the leaf's wider limit, and numpy narrows it (snapping._nearest). */

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RANK_SLACK_M 1e-3 /* snapping.RANK_SLACK_M */

typedef struct {
    const double *ax, *ay, *dlon, *dlat;
} Lines;

typedef struct {
    Lines chord;
    const double *eps_m;
    const uint8_t *single;
    const int64_t *first, *count;
} ChainSet;

/* geodesy.plane_foot for one point and one line: squared distance, and t. */
static inline double plane_foot(const Lines *l, int64_t j, double lon, double lat, double kx,
                                double ky, double *t_out) {
    double x = (l->ax[j] - lon) * kx;
    double y = (l->ay[j] - lat) * ky;
    double dx = l->dlon[j] * kx;
    double dy = l->dlat[j] * ky;
    double t = x * dx;
    t += y * dy;
    double length2 = dx * dx;
    length2 += dy * dy;
    length2 = length2 >= DBL_MIN ? length2 : DBL_MIN; /* np.maximum(length2, tiny) */
    /* numpy: t = clip(-(t / length2), 0, 1). Where the clip decides, the quotient is not
       needed: -(t / length2) < 0 if t > 0, and >= 1 if -t >= length2 (rounding is monotonic and
       1 is a double); else -(t / length2) = -t / length2, in [0, 1]. A zero keeps its sign, as
       numpy 2's clip keeps it (numpy 1's made -0.0 0.0; no result depends on it: t only ever
       multiplies or is compared). */
    if (t > 0.0)
        t = 0.0;
    else if (-t >= length2)
        t = 1.0;
    else
        t = -t / length2;
    x += t * dx;
    y += t * dy;
    x *= x;
    y *= y;
    x += y;
    *t_out = t;
    return x;
}

/* plane_foot for the edges e0..e1 - 1 (one chain's), into d2[] and t[]: the same values, the
   quotient taken always and the clip as selections (fewer mispredicted branches: about a tenth
   faster near a river, where a point measures some thirty edges of a few chains). */
static void plane_feet(const Lines *l, int64_t e0, int64_t e1, double lon, double lat, double kx,
                       double ky, double *restrict d2, double *restrict t_out) {
    const double *restrict ax = l->ax, *restrict ay = l->ay;
    const double *restrict dlon = l->dlon, *restrict dlat = l->dlat;
    for (int64_t e = e0; e < e1; e++) {
        double x = (ax[e] - lon) * kx;
        double y = (ay[e] - lat) * ky;
        double dx = dlon[e] * kx;
        double dy = dlat[e] * ky;
        double t = x * dx;
        t += y * dy;
        double length2 = dx * dx;
        length2 += dy * dy;
        length2 = length2 >= DBL_MIN ? length2 : DBL_MIN;
        double q = -t / length2; /* kept only where the clip does not decide (plane_foot) */
        t = t > 0.0 ? 0.0 : (-t >= length2 ? 1.0 : q);
        x += t * dx;
        y += t * dy;
        x *= x;
        y *= y;
        x += y;
        d2[e - e0] = x;
        t_out[e - e0] = t;
    }
}

/* Chains.bounds for one point and one chain. */
static inline void chain_bounds(const ChainSet *c, int64_t j, double lon, double lat, double kx,
                                double ky, double *lower, double *upper) {
    double t;
    double planar = sqrt(plane_foot(&c->chord, j, lon, lat, kx, ky, &t));
    *lower = planar - c->eps_m[j];
    double x0 = (c->chord.ax[j] - lon) * kx;
    double y0 = (c->chord.ay[j] - lat) * ky;
    double x1 = x0 + c->chord.dlon[j] * kx;
    double y1 = y0 + c->chord.dlat[j] * ky;
    double a = x0 * x0 + y0 * y0, b = x1 * x1 + y1 * y1;
    double to_end = sqrt(a < b ? a : b);
    double near = planar + c->eps_m[j];
    *upper = c->single[j] ? planar : (to_end < near ? to_end : near);
}

/* A point's candidate edges, measured once: grown as needed, freed by rank(). */
typedef struct {
    int64_t *edge;
    double *d2, *t;
    int64_t room;
} Scratch;

static int grow(Scratch *s, int64_t need) {
    if (need <= s->room) return 1;
    int64_t room = need > 2 * s->room ? need : 2 * s->room;
    int64_t *edge = realloc(s->edge, room * sizeof *edge);
    if (edge) s->edge = edge;
    double *d2 = realloc(s->d2, room * sizeof *d2);
    if (d2) s->d2 = d2;
    double *t = realloc(s->t, room * sizeof *t);
    if (t) s->t = t;
    if (!edge || !d2 || !t) return 0;
    s->room = room;
    return 1;
}

/* Measure edge e for point i into the scratch (its n-th entry). */
#define MEASURE(e)                                                                   \
    do {                                                                             \
        if (!grow(&s, n_measured + 1)) goto out_of_memory;                           \
        s.edge[n_measured] = (e);                                                    \
        s.d2[n_measured] = plane_foot(&edges, (e), lon[i], lat[i], kx[i], ky[i],     \
                                      &s.t[n_measured]);                             \
        least = s.d2[n_measured] < least ? s.d2[n_measured] : least;                 \
        n_measured++;                                                                \
    } while (0)

/* For each point i, its candidates items[start[i]:start[i] + count[i]] are edges, or (chained)
   chains: of those, only the chains whose lower bound is within the least of their upper bounds
   times ratio[i] (plus RANK_SLACK_M) have their edges measured (snapping._nearest says why).
   Writes each point's least squared planar distance to least_d2[i] (inf without any edge), and
   emits (point, edge, t, d2) for every edge with d2 <= (sqrt(least_d2) * ratio + RANK_SLACK_M)^2,
   points in order and each point's edges in edge order: a superset of what the point's own,
   narrower limit keeps (snapping._own_ratio), which numpy then applies. Returns how many were
   emitted; if more than cap, only cap were written (call again with room for all); -2 if memory
   ran out. */
int64_t rank(int64_t n, const double *lon, const double *lat, const double *kx, const double *ky,
             const double *ratio, const int64_t *start, const int64_t *count,
             const int64_t *items, int32_t chained, const double *c_ax, const double *c_ay,
             const double *c_dlon, const double *c_dlat, const double *c_eps_m,
             const uint8_t *c_single, const int64_t *c_first, const int64_t *c_count,
             const double *ax, const double *ay, const double *dlon, const double *dlat,
             double *least_d2, int64_t cap, int64_t *out_row, int64_t *out_edge, double *out_t,
             double *out_d2) {
    const Lines edges = {ax, ay, dlon, dlat};
    const ChainSet c = {{c_ax, c_ay, c_dlon, c_dlat}, c_eps_m, c_single, c_first, c_count};
    Scratch s = {NULL, NULL, NULL, 0}, first = {NULL, NULL, NULL, 0};
    double *lower = NULL;
    int64_t lower_room = 0, emitted = 0;
    for (int64_t i = 0; i < n; i++) {
        double least = INFINITY;
        int64_t n_measured = 0;
        if (chained) {
            if (count[i] > lower_room) {
                double *more = realloc(lower, count[i] * sizeof *more);
                if (!more) goto out_of_memory;
                lower = more, lower_room = count[i];
            }
            double upper, least_upper = INFINITY;
            for (int64_t k = 0; k < count[i]; k++) {
                chain_bounds(&c, items[start[i] + k], lon[i], lat[i], kx[i], ky[i], &lower[k],
                             &upper);
                least_upper = upper < least_upper ? upper : least_upper;
            }
            double limit = least_upper * ratio[i] + RANK_SLACK_M;
            /* The kept chain of least lower bound is measured first (into a scratch of its own),
               and its least distance found: a chain whose lower bound is beyond that distance's
               limit (what is emitted below) plus RANK_SLACK_M of room for the bounds' rounding
               holds no edge that is emitted or nearest, so it is not measured. The others are
               measured (or copied) in their listed order, so that what is emitted is what it
               was, in the same order. */
            int64_t best = -1;
            for (int64_t k = 0; k < count[i]; k++)
                if (lower[k] <= limit && (best < 0 || lower[k] < lower[best])) best = k;
            int64_t b_n = 0;
            if (best >= 0) {
                int64_t chain = items[start[i] + best];
                b_n = c_count[chain];
                if (!grow(&first, b_n)) goto out_of_memory;
                plane_feet(&edges, c_first[chain], c_first[chain] + b_n, lon[i], lat[i], kx[i],
                           ky[i], first.d2, first.t);
                for (int64_t k = 0; k < b_n; k++)
                    least = first.d2[k] < least ? first.d2[k] : least;
            }
            double reach = sqrt(least) * ratio[i] + 2 * RANK_SLACK_M;
            for (int64_t k = 0; k < count[i]; k++) {
                if (!(lower[k] <= limit)) continue;
                int64_t chain = items[start[i] + k];
                int64_t e0 = c_first[chain], e1 = e0 + c_count[chain];
                if (k == best) {
                    if (!grow(&s, n_measured + b_n)) goto out_of_memory;
                    memcpy(s.d2 + n_measured, first.d2, b_n * sizeof *s.d2);
                    memcpy(s.t + n_measured, first.t, b_n * sizeof *s.t);
                } else {
                    if (!(lower[k] <= reach)) continue;
                    if (!grow(&s, n_measured + (e1 - e0))) goto out_of_memory;
                    plane_feet(&edges, e0, e1, lon[i], lat[i], kx[i], ky[i],
                               s.d2 + n_measured, s.t + n_measured);
                }
                for (int64_t e = e0; e < e1; e++, n_measured++) {
                    s.edge[n_measured] = e;
                    least = s.d2[n_measured] < least ? s.d2[n_measured] : least;
                }
            }
        } else {
            for (int64_t k = start[i]; k < start[i] + count[i]; k++) MEASURE(items[k]);
        }
        least_d2[i] = least;
        double limit = sqrt(least) * ratio[i] + RANK_SLACK_M;
        limit *= limit;
        for (int64_t k = 0; k < n_measured; k++) {
            if (!(s.d2[k] <= limit)) continue;
            if (emitted < cap) {
                out_row[emitted] = i, out_edge[emitted] = s.edge[k];
                out_t[emitted] = s.t[k], out_d2[emitted] = s.d2[k];
            }
            emitted++;
        }
    }
    free(s.edge), free(s.d2), free(s.t), free(lower);
    free(first.edge), free(first.d2), free(first.t);
    return emitted;
out_of_memory:
    free(s.edge), free(s.d2), free(s.t), free(lower);
    free(first.edge), free(first.d2), free(first.t);
    return -2;
}
