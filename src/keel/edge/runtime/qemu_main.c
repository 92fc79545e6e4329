/* Scores the compiled-in rows and prints, per row, the class and the raw bits of every score
 * (hex, so the host can compare bit for bit without float printf). keel_rows.h is generated. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "keel_rows.h"

int main(void) {
    static float scores[KEEL_N_OUTPUTS];
    for (int i = 0; i < KEEL_N_ROWS; i++) {
        int c = KEEL_PREDICT(KEEL_ROWS[i], scores);
        printf("R %d %d", i, c);
        for (int k = 0; k < KEEL_N_OUTPUTS; k++) {
            uint32_t bits;
            memcpy(&bits, &scores[k], sizeof bits);
            printf(" %08lx", (unsigned long)bits);
        }
        printf("\n");
    }
    printf("END %d\n", KEEL_N_ROWS);
    return 0;
}
