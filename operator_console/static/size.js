// The text size chosen last time, set before the first paint (a classic script in <head>:
// the Content-Security-Policy allows no inline script).
document.documentElement.dataset.size = localStorage.getItem('yijing-size') || 'm';
