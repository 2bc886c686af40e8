#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h)
		return 1;
	long (*f)(void) = (long (*)(void))dlsym(h, "lib_getppid");
	long sum = 0;
	for (int i = 0; i < 10; i++)
		sum += f() == getppid();
	printf("dlopen %ld\n", sum);
	return sum == 10 ? 0 : 2;
}
