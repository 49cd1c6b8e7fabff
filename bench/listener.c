/*
 * The benches' independent JACK client, in C so that it is never itself the late client of a
 * cycle (a Python client needs the GIL in its process callback, and its own xrun callback takes
 * the GIL on the notification thread: it can make the clicks it counts).
 *
 *   listener SERVER FILE CYCLES SOURCE_L SOURCE_R
 *
 * Joins the JACK server SERVER as "xrun-listener" with two input ports, connects them to
 * SOURCE_L and SOURCE_R whenever those ports exist (a restarted client brings new ones), and
 * writes into FILE, which it creates (mapped shared memory a reader polls):
 *
 *   int64 header[8]: cycles done, xrun cycles, xrun notifications, connected (0/1), unused...
 *   float64 time[CYCLES]: CLOCK_MONOTONIC seconds when each cycle's callback ran
 *   float32 peak[CYCLES]: the peak of both inputs in each cycle
 *
 * The process callback only reads its inputs and writes its own slots; the count of cycles is
 * stored last with release ordering, so a reader that loads it with acquire ordering (any load
 * on x86-64) sees every slot below it. Runs until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <jack/jack.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { CYCLES_DONE, XRUN_CYCLES, XRUN_NOTIFICATIONS, CONNECTED, HEADER_FIELDS = 8 };

static jack_client_t *client;
static jack_port_t *inputs[2];
static int64_t *header;
static float *peaks;
static double *times;
static int64_t capacity;
static volatile sig_atomic_t stopping;
static jack_nframes_t last_xrun_frame;
static int any_xrun;

static int process(jack_nframes_t frames, void *arg) {
    (void)arg;
    int64_t i = header[CYCLES_DONE];
    if (i >= capacity) return 0;
    float peak = 0.0f;
    for (int c = 0; c < 2; c++) {
        const float *in = jack_port_get_buffer(inputs[c], frames);
        for (jack_nframes_t n = 0; n < frames; n++) {
            float v = fabsf(in[n]);
            if (v > peak) peak = v;
        }
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    peaks[i] = peak;
    times[i] = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    __atomic_store_n(&header[CYCLES_DONE], i + 1, __ATOMIC_RELEASE);
    return 0;
}

/* The notification thread: jackd notifies once per late client of a cycle, and once more when
 * its own timer woke late. One click per cycle, whatever the number of notifications. */
static int xrun(void *arg) {
    (void)arg;
    jack_nframes_t frame = jack_last_frame_time(client);
    __atomic_add_fetch(&header[XRUN_NOTIFICATIONS], 1, __ATOMIC_RELAXED);
    if (!any_xrun || frame != last_xrun_frame) {
        any_xrun = 1;
        last_xrun_frame = frame;
        __atomic_add_fetch(&header[XRUN_CYCLES], 1, __ATOMIC_RELAXED);
    }
    return 0;
}

static void stop(int sig) {
    (void)sig;
    stopping = 1;
}

/* Connect each input to its source where the source exists and is not connected yet. */
static int connect_sources(char **sources) {
    int connected = 1;
    for (int c = 0; c < 2; c++) {
        if (jack_port_by_name(client, sources[c]) == NULL) {
            connected = 0;
            continue;
        }
        if (!jack_port_connected_to(inputs[c], sources[c])) {
            int rc = jack_connect(client, sources[c], jack_port_name(inputs[c]));
            if (rc != 0 && rc != EEXIST) connected = 0;
        }
    }
    return connected;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SERVER FILE CYCLES SOURCE_L SOURCE_R\n", argv[0]);
        return 2;
    }
    capacity = atoll(argv[3]);
    size_t size = sizeof(int64_t) * HEADER_FIELDS + capacity * (sizeof(float) + sizeof(double));
    int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        perror(argv[2]);
        return 1;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    mlock(map, size); /* no page fault in the callback where the system allows it */
    header = map;
    times = (double *)(header + HEADER_FIELDS);
    peaks = (float *)(times + capacity);

    jack_status_t status;
    client = jack_client_open("xrun-listener", JackNoStartServer | JackServerName, &status, argv[1]);
    if (client == NULL) {
        fprintf(stderr, "cannot join the JACK server %s (status 0x%x)\n", argv[1], status);
        return 1;
    }
    for (int c = 0; c < 2; c++) {
        char name[8];
        snprintf(name, sizeof name, "in_%d", c);
        inputs[c] = jack_port_register(client, name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    }
    jack_set_process_callback(client, process, NULL);
    jack_set_xrun_callback(client, xrun, NULL);
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    if (jack_activate(client) != 0) {
        fprintf(stderr, "cannot activate the listener\n");
        return 1;
    }
    while (!stopping) {
        header[CONNECTED] = connect_sources(argv + 4);
        usleep(100000);
    }
    jack_deactivate(client);
    jack_client_close(client);
    munmap(map, size);
    close(fd);
    return 0;
}
