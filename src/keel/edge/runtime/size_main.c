/* Size probe: the same image is linked with and without the model (-DKEEL_WITH_MODEL); the
 * difference is the model's cost. Input and output go through volatile bytes so the call stays,
 * and no float operation sits in the harness (it would pull soft-float code into both images). */
#include <stdint.h>
#include "keel_probe.h"

volatile unsigned char keel_in[sizeof(KEEL_IN_T) * KEEL_N_FEATURES];
volatile unsigned char keel_out[sizeof(float) * KEEL_N_OUTPUTS];
volatile int keel_class;

int main(void) {
#ifdef KEEL_WITH_MODEL
    KEEL_IN_T x[KEEL_N_FEATURES];
    float s[KEEL_N_OUTPUTS];
    unsigned char *xb = (unsigned char *)x;
    const unsigned char *sb = (const unsigned char *)s;
    for (unsigned i = 0; i < sizeof x; i++) xb[i] = keel_in[i];
    keel_class = KEEL_PREDICT(x, s);
    for (unsigned i = 0; i < sizeof s; i++) keel_out[i] = sb[i];
#else
    for (unsigned i = 0; i < sizeof keel_out; i++) keel_out[i] = keel_in[i % sizeof keel_in];
    keel_class = 0;
#endif
    return 0;
}
