//! Scheduling of the crate's own background threads (used by the lanes and the stores, so
//! it sits beside both).

/// Gives the calling thread the lowest scheduling priority (nice 19 on Linux, where a
/// priority is per thread), for work that no caller waits on and that mostly waits on
/// the device: finishing a rolled segment, preparing lane space ahead. At the default
/// priority such a thread, woken on a core where a writer runs, took that core for a
/// whole scheduler tick (4 ms here) or three; at the lowest it runs on an idle core or
/// in the writer's gaps, and if busy writers starve it, they do its work themselves
/// (a roll makes its next segment, an append its lane space). If the call fails the
/// thread keeps its priority.
pub(crate) fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;
    use rustix::thread::gettid;

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = getpriority_process(Some(gettid())).unwrap();
        let lowered = std::thread::spawn(|| {
            super::lower_this_thread();
            getpriority_process(Some(gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(getpriority_process(Some(gettid())).unwrap(), before);
    }
}
