/*
 * A library for LD_PRELOAD and LD_AUDIT: its constructor says which program it was
 * loaded into, and ld.so's audit interface announces itself.
 */
#include <string.h>
#include <unistd.h>

extern char *program_invocation_short_name;

__attribute__((constructor)) static void announce(void)
{
	const char *name = program_invocation_short_name;
	write(2, "preload-ctor in ", 16);
	write(2, name, strlen(name));
	write(2, "\n", 1);
}

/* Called by env_lib_main.c when it is linked against this library. */
int preload_answer(void)
{
	return 42;
}

/* The first call ld.so makes into an LD_AUDIT library. */
unsigned int la_version(unsigned int version)
{
	write(2, "audit-version\n", 14);
	return version;
}
