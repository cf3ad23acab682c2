<?php
// The shoal gateway client has no dependency and no build step: require this
// file (or map the Shoal\ namespace to this directory in your autoloader).
declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'Shoal\\')) {
        $file = __DIR__ . '/' . substr($class, 6) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
