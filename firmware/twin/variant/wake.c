// Scheduled callbacks run while the main thread waits, as on the ESP32.
//
// On the ESP32 every wait of the main thread (time.sleep, a blocking read of the console,
// select/poll) goes through MICROPY_EVENT_POLL_HOOK, which runs scheduled callbacks such as
// machine.Timer's. The unix port runs them only between bytecodes, or when a wait returns
// EINTR. So when a callback is scheduled from another thread (the simulated machine's timer
// thread), the main thread is sent a signal with a handler that does nothing and no
// SA_RESTART: its wait returns EINTR, the port's retry loop runs the callback and waits on.
// Without this, aiorepl's raw REPL (a blocking read) or a `time.sleep` typed at it would
// stop the firmware's safety timer on the twin while it keeps running on a board.
#include <pthread.h>
#include <signal.h>

#define TWIN_WAKE_SIGNAL SIGURG  // ignored by default; coalesces (not a queued RT signal)

static pthread_t twin_main_thread;

static void twin_on_wake(int sig) {
    (void)sig;
}

__attribute__((constructor)) static void twin_wake_init(void) {
    twin_main_thread = pthread_self();
    struct sigaction sa;
    sa.sa_handler = twin_on_wake;
    sa.sa_flags = 0;
    sigemptyset(&sa.sa_mask);
    sigaction(TWIN_WAKE_SIGNAL, &sa, NULL);
}

void twin_wake_main(void) {
    if (!pthread_equal(pthread_self(), twin_main_thread)) {
        pthread_kill(twin_main_thread, TWIN_WAKE_SIGNAL);
    }
}
