/* placeholder: the secupload command-line tool */
#include <stdio.h>
int main(void) { fputs("secupload: not built yet\n", stderr); return 2; }
